"""Epoch plan size and speed at scale, without a server: a synthetic listing of `--members`
files in shards of `--per-shard`, as `dataset._Builder` gets it from the shard listing.

    PYTHONPATH=src python bench/bench_epoch_plan.py [--members 1000000] [--per-shard 64]

Prints the plan's memory (arrays and names), its persisted size, the build time from the
listing, the time to compute an epoch order (full, shard), and the time to turn one step of
256 samples into GetBatch entries.
"""
import argparse
import time
import tracemalloc

from getbatch.epochs.dataset import _Builder
from getbatch.epochs.order import permutation
from getbatch.epochs.request import EpochStep
from getbatch.epochs.spec import parse_spec


class _Plans:
    def __init__(self, ds, perm):
        self.ds, self.perm = ds, perm

    def order(self, rec, epoch):
        return self.ds, self.perm


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=1_000_000)
    p.add_argument("--per-shard", type=int, default=64)
    args = p.parse_args()
    spec = parse_spec({"bucket": "b", "shards": {"prefix": ""}, "batch_size": 256})
    tracemalloc.start()
    t0 = time.perf_counter()
    b = _Builder(spec)
    for s in range(0, args.members, args.per_shard):
        b.add_shard(f"train/shard-{s // args.per_shard:06d}.tar",
                    [f"{i:08d}.jpg" for i in range(s, min(args.members, s + args.per_shard))])
    ds = b.done()
    build = time.perf_counter() - t0
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(f"{ds.members} members in {len(ds.shards)} shards: built in {build:.2f} s, "
          f"{ds.nbytes() / 2**20:.1f} MiB (traced {held / 2**20:.1f} MiB), "
          f"file {len(ds.to_bytes()) / 2**20:.1f} MiB")
    for mode in ("full", "shard"):
        t0 = time.perf_counter()
        perm = permutation(ds, mode, 4096, seed=1, epoch=0)
        print(f"order ({mode}): {time.perf_counter() - t0:.2f} s, "
              f"{len(perm) * perm.itemsize / 2**20:.1f} MiB")
    rec = {"spec": {"batch_size": 256, "drop_last": False, "bucket": "b", "provider": "ais"}}
    where = EpochStep(rec, 0, 0, 100, 1, 0)
    t0 = time.perf_counter()
    for _ in range(100):
        where.entries(_Plans(ds, perm))
    print(f"one step of 256 samples to entries: {(time.perf_counter() - t0) * 10:.2f} ms")


if __name__ == "__main__":
    main()
