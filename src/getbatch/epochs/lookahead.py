"""Look-ahead from the plan: while step n of a rank is served, warm the next steps
(`ahead` of the request; 0, off, by default: on this machine it measured no gain, see
bench/RESULTS-training.md).

A node that serves a step of a plan knows the next ones. For each, on a thread of the
warm-up pool (batch/warmup.py: best effort, under `warmup_workers`, skipped when every
thread is busy) it opens each shard the step reads (building or loading its index, and for
a remote bucket fetching the shard into the local cache) and asks the kernel to read the
first HEAD_BYTES of each member held uncompressed (posix_fadvise WILLNEED), at most
STEP_BYTES per step. A step is warmed once per process (the last WARMED_KEEP remembered).

On a cluster the node warms what it holds itself (its share of the buckets); the items other
nodes send for the step are read cold there.
"""
import logging
import os

from ..archive import ArchiveError
from ..archive.lru import LRU
from ..batch.errors import RangeNotSatisfiable
from ..batch.warmup import HEAD_BYTES
from ..store.errors import StoreError

log = logging.getLogger("getbatch.batch")

STEP_BYTES = 64 << 20    # the most one step asks the kernel to read ahead
WARMED_KEEP = 4096
_WILLNEED = getattr(os, "POSIX_FADV_WILLNEED", None)


class StepWarmer:
    def __init__(self, plans, storage, pool):
        """`storage`: what this node reads itself (on a cluster, its own share); `pool`: the
        app's WarmPool, which batches warm their own items on too."""
        self.plans = plans
        self.storage = storage
        self.pool = pool
        self._warmed = LRU(WARMED_KEEP)

    def after(self, where, workers):
        """Warm the steps after `where` (an EpochStep: `where.ahead` of them) with up to
        `workers` threads."""
        if workers <= 0 or where.ahead <= 0:
            return
        rec = where.rec
        steps = []
        for k in range(where.step + 1, where.step + 1 + where.ahead):
            key = (rec["id"], where.epoch, where.rank, where.world, where.offset, k)
            if not self._warmed.get(key):
                steps.append((key, k))
        # one task warms them in order; when every warm-up thread is busy, the batches
        # themselves come first and these steps are tried again after the next one
        if steps and self.pool.offer(lambda: self.warm_steps(where, [k for _, k in steps]),
                                     workers):
            for key, _ in steps:
                self._warmed.put(key, True)

    def warm_steps(self, where, steps):
        for k in steps:
            try:
                entries = where.entries(self.plans, step=k)
            except RangeNotSatisfiable:
                return    # past the end of the epoch
            self.warm(entries)

    def warm(self, entries):
        """Open each shard of `entries` once and ask for its members' first bytes."""
        by_shard = {}
        for e in entries:
            by_shard.setdefault((e.provider, e.bucket, e.objname), []).append(e.archpath)
        budget = STEP_BYTES
        for (provider, bucket, name), members in by_shard.items():
            if budget <= 0:
                return
            try:
                backend = self.storage.backend(provider, bucket)
                if backend.remote:
                    backend.prefetch(bucket, name)
                with backend.open_shard(bucket, name) as shard:
                    budget -= _advise(shard, members, budget)
            except (StoreError, ArchiveError, OSError, ValueError) as exc:
                # not held here (a cluster peer's share), gone, or not an archive: the step's
                # own request reports what matters
                log.debug("look-ahead skipped %s://%s/%s: %s", provider, bucket, name, exc)


def _advise(shard, members, budget):
    """posix_fadvise the members' extents; the bytes asked for."""
    if _WILLNEED is None:
        return 0
    fd, asked = shard.fileno(), 0
    for m in members:
        try:
            ext = shard.extent(m)
        except LookupError:
            continue
        if ext is None or fd is None or fd < 0:
            continue
        n = min(ext[1], HEAD_BYTES, budget - asked)
        if n <= 0:
            break
        os.posix_fadvise(fd, ext[0], n, _WILLNEED)
        asked += n
    return asked
