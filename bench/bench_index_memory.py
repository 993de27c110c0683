"""Worker memory kept by parsed shards: issue 16's workload, before/after `index_memory`.

Twelve .zip shards of 200,000 empty members each in an ais:// bucket, one GetBatch taking one
member from each; the single worker's RSS (VmRSS) is read before the batch and once it has
answered. Run against any source tree (PYTHONPATH picks it):

    PYTHONPATH=src python bench/bench_index_memory.py [--shards 12] [--members 200000]
        [--index-memory 64MiB] [--repeat 3]

Prints one line per run and the median growth; bench/RESULTS.md, "Parsed shards", has figures.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile

import requests

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from remote_servers import free_port  # noqa: E402


def make_zip(path, members):
    with zipfile.ZipFile(path, "w") as z:
        for i in range(members):
            z.writestr(f"m{i:07d}.bin", b"")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def settled_rss(pid, timeout=30):
    """VmRSS once it stops moving: the worker finishes a request (closes its shards) after
    the client has the whole answer."""
    last, deadline = rss_kib(pid), time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = rss_kib(pid)
        if abs(now - last) < 1024:
            return now
        last = now
    return last


def worker_pid(master):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(master)], capture_output=True,
                         text=True).stdout.split()
    return int(out[0])


def run_once(args, shard_file, work):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data = os.path.join(work, f"data-{port}")
    env = dict(os.environ)
    if args.index_memory:
        env["GETBATCH_INDEX_MEMORY"] = args.index_memory
    node = subprocess.Popen([sys.executable, "-m", "getbatch.cli", "serve", "--port", str(port),
                             "--data-dir", data, "--workers", "1", "--threads", "2"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        for _ in range(300):
            try:
                if requests.get(url + "/v1/health", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        requests.post(url + "/v1/buckets/bk", json={"action": "create-bck"}).raise_for_status()
        with open(shard_file, "rb") as f:
            blob = f.read()
        for i in range(args.shards):
            requests.put(f"{url}/v1/objects/bk/s{i}.zip", data=blob).raise_for_status()
        pid = worker_pid(node.pid)
        before = rss_kib(pid)
        body = {"in": [{"objname": f"s{i}.zip", "archpath": "m0000042.bin"}
                       for i in range(args.shards)], "strm": True}
        r = requests.get(url + "/v1/ml/moss/bk", json=body)
        r.raise_for_status()
        after = settled_rss(pid)
        return before, after
    finally:
        os.killpg(node.pid, 15)
        node.wait(30)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shards", type=int, default=12)
    p.add_argument("--members", type=int, default=200_000)
    p.add_argument("--index-memory", default="", help="the setting (default: the build's)")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as work:
        shard = os.path.join(work, "shard.zip")
        make_zip(shard, args.members)
        print(f"{args.shards} shards of {args.members} empty members, "
              f"{os.path.getsize(shard) / 1e6:.1f} MB each")
        growth = []
        for _ in range(args.repeat):
            before, after = run_once(args, shard, work)
            growth.append((after - before) / 1024)
            print(f"worker RSS before {before / 1024:.0f} MiB, after {after / 1024:.0f} MiB, "
                  f"+{growth[-1]:.0f} MiB")
        print(f"median growth: +{statistics.median(growth):.0f} MiB")


if __name__ == "__main__":
    main()
