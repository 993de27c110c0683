"""The sample order of an epoch, and which part of it one rank's step is.

The order is a function of (dataset, seed, epoch, shuffle) alone, the same on every node and
in every Python (only `random.Random(str).random()` is used, whose sequence Python keeps
stable across versions for a given seed):

- `full`: a Fisher-Yates shuffle of all samples, j = floor(random() * (i + 1)) for i from n-1
  down to 1, with `Random(f"getbatch-epoch:{seed}:{epoch}")`.
- `shard`: the shards in a Fisher-Yates order drawn the same way, their samples one shard after
  another, then each run of `window` consecutive samples shuffled with the same generator (a
  batch then reads from a few shards: locality, at the price of a weaker shuffle).
- `none`: the dataset order (evaluation).

Steps: with B samples per batch and W ranks, global step k is the B*W samples from
`offset + k*B*W` of that order, and rank r takes the r-th run of B of them. Without
drop_last, a last global step shorter than B*W is split into W contiguous near-equal runs
(earlier ranks take the extra sample). The order does not depend on W, so a job that changes
its world size (elastic training) keeps the global order: it resumes with `offset` = samples
the whole job consumed so far, and steps count from there.
"""
import random
from array import array

from ..batch.errors import RangeNotSatisfiable


def _rng(seed, epoch):
    return random.Random(f"getbatch-epoch:{seed}:{epoch}").random


def _shuffle(perm, lo, hi, rnd):
    """Fisher-Yates over perm[lo:hi], in place."""
    for i in range(hi - 1, lo, -1):
        j = lo + int(rnd() * (i - lo + 1))
        perm[i], perm[j] = perm[j], perm[i]


def permutation(ds, mode, window, seed, epoch):
    """array('I') of sample ids in the order of epoch `epoch`."""
    n = ds.samples
    if mode == "none":
        return array("I", range(n))
    rnd = _rng(seed, epoch)
    if mode == "full":
        perm = array("I", range(n))
        _shuffle(perm, 0, n, rnd)
        return perm
    # shard mode: samples of a shard are contiguous in the dataset (built shard by shard)
    bounds = _shard_samples(ds)
    shards = array("I", range(len(bounds) - 1))
    _shuffle(shards, 0, len(shards), rnd)
    perm = array("I")
    for s in shards:
        perm.extend(range(bounds[s], bounds[s + 1]))
    for lo in range(0, n, window):
        _shuffle(perm, lo, min(n, lo + window), rnd)
    return perm


def _shard_samples(ds):
    """array: shard s holds samples [b[s], b[s+1])."""
    b = array("I")
    starts, shard_of = ds.starts, ds.shard_of
    prev = -1
    for i in range(ds.samples):
        s = shard_of[starts[i]]
        while prev < s:
            b.append(i)
            prev += 1
    while len(b) <= len(ds.shards):
        b.append(ds.samples)
    return b


def step_count(n, batch, world, drop_last, offset=0):
    """Steps of one rank over the samples from `offset` on."""
    left = max(0, n - offset)
    full, rest = divmod(left, batch * world)
    return full + (1 if rest and not drop_last else 0)


def step_range(n, batch, world, rank, step, drop_last, offset=0):
    """(start, stop) positions in the epoch order of rank `rank`'s step `step`;
    RangeNotSatisfiable past the end."""
    g = batch * world
    left = max(0, n - offset)
    full, rest = divmod(left, g)
    if step < full:
        start = offset + step * g + rank * batch
        return start, start + batch
    if step == full and rest and not drop_last:
        q, extra = divmod(rest, world)
        start = offset + full * g + rank * q + min(rank, extra)
        stop = start + q + (rank < extra)
        if stop > start:
            return start, stop
        raise RangeNotSatisfiable(f"step {step} of rank {rank} is empty: the epoch's last "
                                  f"{rest} samples went to the first {rest} of {world} ranks")
    raise RangeNotSatisfiable(f"step {step} is past the end of the epoch: rank {rank} of "
                              f"{world} has {step_count(n, batch, world, drop_last, offset)} "
                              f"steps of {batch} samples (from sample {offset})")
