"""Admission under a storm: refusing at once (one tier) against waiting for a slot (two tiers).

Run: python bench/bench_admission.py [--runs 3] [--seconds 20] [--clients 16]
One node (2 processes x 8 threads, max_batches 4: more request threads than batch slots, so
admission is what limits) serves `--clients` SDK clients (`aistore==2.0.0`, its default
retries: a 429 is asked again after its Retry-After), each asking in a loop for batches of
32 x 16 KiB objects. Modes, alternated, `--runs` of each:
- `refuse`: admit_wait 0, a batch past max_batches gets 429 at once (the behaviour before the
  throttle tier);
- `wait`: the defaults (admit_wait 1 s, max_waiting 64): it waits for a running one to end.
Per run: items per second received, batches, 429s answered (the node's
getbatch_http_429_total), and the 99th percentile of a batch's time at its client (the SDK's
waits after 429 included). Prints medians; bench/RESULTS.md, "Admission under a storm", records
a run. `--server-src` runs the node from another source tree (an older commit).
"""
import argparse
import os
import statistics
import sys
import tempfile
import threading
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "src"))

from tests.support.nodes import Node, serve_argv  # noqa: E402

BUCKET = "storm"
N_OBJ, OBJ_SIZE, PER_BATCH = 256, 16 << 10, 32
MODES = {"refuse": {"admit_wait": 0}, "wait": {}}


def rejected(url):
    text = requests.get(f"{url}/metrics", timeout=10).text
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
               if ln.startswith("getbatch_http_429_total{") and 'path="moss"' in ln)


def storm(url, clients, seconds):
    """(items/s, batches, errors) of `clients` SDK clients asking for batches for `seconds`."""
    from aistore import Client
    stop = time.monotonic() + seconds
    counts, latencies = [], []

    def client(k):
        c = Client(url, timeout=(5, 120))
        bucket = c.bucket(BUCKET)
        items = batches = errors = 0
        i = k
        while time.monotonic() < stop:
            names = [f"o{(i * PER_BATCH + j) % N_OBJ:03d}" for j in range(PER_BATCH)]
            i += clients
            t = time.monotonic()
            try:
                got = sum(1 for _ in c.batch(names, bucket=bucket).get())
            except Exception:   # a RetryError after the SDK's own retries
                errors += 1
                continue
            if time.monotonic() <= stop:
                items += got
                batches += 1
                latencies.append(time.monotonic() - t)
        counts.append((items, batches, errors))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    items, batches, errors = (sum(c[i] for c in counts) for i in range(3))
    latencies.sort()
    p99 = latencies[int(0.99 * (len(latencies) - 1))] if latencies else 0.0
    return items / seconds, batches, errors, p99, time.monotonic() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--server-src", help="run the node from this src/ directory")
    args = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-admission-")
    env = {"GETBATCH_MAX_BATCHES": "4"}
    if args.server_src:
        env["PYTHONPATH"] = os.path.abspath(args.server_src)
    node = Node(os.path.join(tmp, "data"), os.path.join(tmp, "server.log"),
                serve_argv(workers=2, threads=8), env=env)
    try:
        url = node.url
        requests.post(f"{url}/v1/buckets/{BUCKET}", json={"action": "create-bck"},
                      timeout=10).raise_for_status()
        for i in range(N_OBJ):
            requests.put(f"{url}/v1/objects/{BUCKET}/o{i:03d}", data=os.urandom(OBJ_SIZE),
                         timeout=10).raise_for_status()
        results = {m: [] for m in MODES}
        for run in range(args.runs):
            for mode, settings in MODES.items():
                requests.put(f"{url}/v1/config", json={"action": "reset-config"},
                             timeout=10).raise_for_status()
                if settings:
                    requests.put(f"{url}/v1/config", json={"action": "set-config",
                                                            "value": settings},
                                 timeout=10).raise_for_status()
                before = rejected(url)
                rate, batches, errors, p99, took = storm(url, args.clients, args.seconds)
                refused = rejected(url) - before
                results[mode].append((rate, batches, refused, errors, p99))
                print(f"run {run} {mode:6s}: {rate:7.0f} items/s, {batches} batches, "
                      f"{refused:.0f} 429s ({refused / max(batches, 1):.2f} per batch), "
                      f"{errors} client errors, p99 batch {p99 * 1000:.0f} ms, {took:.1f} s",
                      flush=True)
        print(f"\n{args.clients} SDK clients, {PER_BATCH} x {OBJ_SIZE >> 10} KiB per batch, "
              f"max_batches 4, medians of {args.runs} x {args.seconds:g} s:")
        for mode, rows in results.items():
            med = [statistics.median(r[i] for r in rows) for i in range(5)]
            print(f"  {mode:6s}: {med[0]:7.0f} items/s  {med[1]:6.0f} batches  "
                  f"{med[2]:6.0f} 429s ({med[2] / max(med[1], 1):.2f} per batch)  "
                  f"{med[3]:.0f} client errors  p99 batch {med[4] * 1000:.0f} ms")
    finally:
        node.stop()


if __name__ == "__main__":
    main()
