"""The first batch over cold shards, with and without a shard-index build job ahead of it.

Run: python bench/bench_shard_index.py [--rounds 3] [--shards 500]
One node (2 processes x 2 threads) holds `--shards` .tar and as many .tgz shards, each of 64
members of 4 KiB. A batch names one member of every shard of a format (the first step of an
epoch that visits each shard once). Per round and format, the node is stopped, its shard
indexes and decompressed copies (inflate cache) deleted and started again (nothing in
memory, nothing on disk but the shards), then either:
- "lazy": the batch runs at once and builds each shard's index inside it (today's first
  epoch);
- "job": `getbatch shard-index build --wait` runs first (timed), the node is restarted (so
  the batch finds the indexes on disk, as a later process or a restarted node does), then
  the batch.
Page caches stay warm: what is measured is the index work, not the disk. Prints medians;
bench/RESULTS.md, "Shard-index build job", records a run.
"""
import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "src"))

from tests.support.nodes import Node, serve_argv  # noqa: E402

BUCKET = "cold"
MEMBERS, SIZE = 64, 4096


def shard(fmt, seed):
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w:gz" if fmt == "tgz" else "w") as tf:
        for m in range(MEMBERS):
            ti = tarfile.TarInfo(f"m{m:03d}.bin")
            ti.size = SIZE
            tf.addfile(ti, io.BytesIO(bytes([(seed + m) % 251]) * SIZE))
    return bio.getvalue()


def batch(url, fmt, n):
    body = {"in": [{"objname": f"{fmt}/s{s:04d}.{fmt}", "archpath": f"m{s % MEMBERS:03d}.bin"}
                   for s in range(n)], "strm": True}
    t0 = time.monotonic()
    r = requests.get(f"{url}/v1/ml/moss/{BUCKET}", json=body, timeout=600)
    r.raise_for_status()
    assert len(r.content) >= n * SIZE
    return time.monotonic() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--shards", type=int, default=500)
    args = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-shard-index-")
    data = os.path.join(tmp, "data")
    log = os.path.join(tmp, "server.log")
    node = Node(data, log, serve_argv(workers=2, threads=2))
    port = node.port
    try:
        url = node.url
        requests.post(f"{url}/v1/buckets/{BUCKET}", json={"action": "create-bck"},
                      timeout=10).raise_for_status()
        for fmt in ("tar", "tgz"):
            for s in range(args.shards):
                requests.put(f"{url}/v1/objects/{BUCKET}/{fmt}/s{s:04d}.{fmt}",
                             data=shard(fmt, s), timeout=30).raise_for_status()
        rows = {}
        for rnd in range(args.rounds):
            for fmt in ("tar", "tgz"):
                for mode in (("lazy", "job") if rnd % 2 == 0 else ("job", "lazy")):
                    node.stop()
                    for d in ("shard-index", "inflate-cache"):
                        shutil.rmtree(os.path.join(data, ".sys", d), ignore_errors=True)
                    node = Node(data, log, serve_argv(workers=2, threads=2), port=port)
                    build = 0.0
                    if mode == "job":
                        t0 = time.monotonic()
                        subprocess.run([sys.executable, "-m", "getbatch.cli", "shard-index",
                                        "build", "--url", url, "--bucket", BUCKET, "--prefix",
                                        f"{fmt}/", "--wait"], check=True, capture_output=True)
                        build = time.monotonic() - t0
                        node.stop()
                        node = Node(data, log, serve_argv(workers=2, threads=2), port=port)
                    first = batch(url, fmt, args.shards)
                    rows.setdefault((fmt, mode), []).append((first, build))
                    print(f"round {rnd} {fmt} {mode}: first batch {first:.2f} s"
                          + (f", build job {build:.2f} s" if build else ""), flush=True)
        print(f"\n{args.shards} shards of {MEMBERS} x {SIZE // 1024} KiB, one member of each "
              f"per batch; medians of {args.rounds}:")
        for fmt in ("tar", "tgz"):
            lazy = statistics.median(r[0] for r in rows[(fmt, "lazy")])
            job = statistics.median(r[0] for r in rows[(fmt, "job")])
            build = statistics.median(r[1] for r in rows[(fmt, "job")])
            print(f"  .{fmt}: first batch {lazy:.2f} s lazy, {job:.2f} s after the job "
                  f"(x{lazy / job:.1f}); the job itself {build:.2f} s")
    finally:
        node.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
