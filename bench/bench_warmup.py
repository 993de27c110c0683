"""Warm-up on a cold page cache: one GetBatch with `warmup_workers` off, 1 and 2.

    PYTHONPATH=src python bench/bench_warmup.py [--rounds 5] [--cache cold|warm]

Starts one node (1 worker) on a scratch data dir, writes three workloads, and for each round
and setting (order rotated every round) drops the node's object files from the page cache
with posix_fadvise(DONTNEED) after a sync (only these files: the rest of the machine's cache,
and other users' measurements, are left alone), sets `warmup_workers` at run time through
/v1/config, and times one GetBatch read to the end by the client. Prints the median time and
throughput per workload and setting, and the median of the per-round ratios to "off".
`--cache warm` skips the eviction (what warm-up costs when there is nothing to warm).
"""
import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import requests

WORKLOADS = [("4000 x 16 KiB", 4000, 16 << 10), ("400 x 256 KiB", 400, 256 << 10),
             ("24 x 8 MiB", 24, 8 << 20)]
SETTINGS = (-1, 1, 2)


def _port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _evict(data_dir):
    os.sync()
    n = 0
    for root, dirs, files in os.walk(data_dir):
        dirs[:] = [d for d in dirs if d != ".sys"]
        for f in files:
            fd = os.open(os.path.join(root, f), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                n += 1
            finally:
                os.close(fd)
    return n


def _set(url, workers):
    r = requests.put(f"{url}/v1/config", timeout=10,
                     json={"action": "set-config", "value": {"warmup_workers": workers}})
    r.raise_for_status()


def _batch(url, bucket, count):
    body = {"in": [{"objname": f"o{i}"} for i in range(count)], "strm": True}
    t0 = time.perf_counter()
    with requests.get(f"{url}/v1/ml/moss/{bucket}", json=body, stream=True, timeout=300) as r:
        r.raise_for_status()
        n = sum(len(c) for c in r.iter_content(1 << 20))
    return time.perf_counter() - t0, n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cache", choices=("cold", "warm"), default="cold")
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="bench-warmup-", dir=os.environ.get("BENCH_DIR", "."))
    port = _port()
    url = f"http://127.0.0.1:{port}"
    data = os.path.join(base, "data")
    log = open(os.path.join(base, "server.log"), "wb")
    node = subprocess.Popen([sys.executable, "-m", "getbatch.cli", "serve", "--port", str(port),
                             "--data-dir", data, "--workers", "1", "--threads", "2",
                             "--log-level", "WARNING"], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        for _ in range(100):
            try:
                if requests.get(url + "/v1/health", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        for w, (name, count, size) in enumerate(WORKLOADS):
            requests.post(f"{url}/v1/buckets/w{w}", json={"action": "create-bck"},
                          timeout=10).raise_for_status()
            blob = os.urandom(size)
            for i in range(count):
                requests.put(f"{url}/v1/objects/w{w}/o{i}", data=blob,
                             timeout=30).raise_for_status()
        files = _evict(data)
        print(f"{args.cache} page cache" + (f" (fadvise DONTNEED of {files} files before each "
                                            "batch)" if args.cache == "cold" else "")
              + f", {args.rounds} rounds; median seconds, MB/s, ratio to off (median per round)")
        for w, (name, count, size) in enumerate(WORKLOADS):
            times = {s: [] for s in SETTINGS}
            for rnd in range(args.rounds):
                order = SETTINGS[rnd % 3:] + SETTINGS[:rnd % 3]
                for s in order:
                    _set(url, s)
                    if args.cache == "cold":
                        _evict(data)
                    else:
                        _batch(url, f"w{w}", count)  # cached for sure
                    dt, n = _batch(url, f"w{w}", count)
                    times[s].append(dt)
            for s in SETTINGS:
                med = statistics.median(times[s])
                ratio = statistics.median(o / t for o, t in zip(times[-1], times[s]))
                print(f"{name:<14} warmup_workers={s:>2}: {med:7.3f} s  "
                      f"{count * size / med / 1e6:8.1f} MB/s  speed-up x{ratio:.2f}  "
                      f"(min {min(times[s]):.3f}, max {max(times[s]):.3f})", flush=True)
    finally:
        node.terminate()
        node.wait(30)
        log.close()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
