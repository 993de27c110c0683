"""getbatch.torch: PyTorch datasets over getbatch batches (the `torch` extra).

`EpochDataset` iterates the steps of one rank of an epoch plan; `BatchesDataset` a list of
batches the user samples himself (names per batch). Each item is one batch (a `Batch`: a
list with `.epoch` and `.step`), so use them with `DataLoader(ds, batch_size=None,
num_workers=N)` or, to track progress for checkpoints, `EpochLoader(ds, num_workers=N)`.
DataLoader workers split the steps round-robin (worker w of n takes steps w, w+n, ...), so the
loader hands the training loop the steps in order. Nothing is decoded: a sample is
`(name, bytes)`, or with a plan grouped by sample a dict `{"__key__": key, ext: bytes}` as
WebDataset makes it (`x.jpg` + `x.cls` -> {"jpg": ..., "cls": ...}).

Each worker fetches the next `prefetch` batches while one is consumed; a broken stream is
resumed from its first missing entry (loader/fetch.py), and every entry is checked against
its xxhash64 (`verify`). `state_dict()` / `load_state_dict()` of an EpochLoader continue a
restarted job at the first sample its last checkpoint had not seen, also with another world
size (the plan's global order is kept: docs/epochs.md).
"""
import queue
import threading

import torch.distributed as dist
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from .epochs.dataset import sample_key
from .epochs.order import step_count
from .loader.fetch import EmptyStep, Fetcher
from .loader.plans import describe_plan


class Batch(list):
    """The samples of one step."""

    def __init__(self, samples, epoch, step):
        super().__init__(samples)
        self.epoch = epoch
        self.step = step


def group_samples(entries):
    """Consecutive entries sharing a sample key -> WebDataset-style dicts."""
    out, cur = [], None
    for name, data in entries:
        key = sample_key(name)
        if cur is None or cur["__key__"] != key:
            cur = {"__key__": key}
            out.append(cur)
        cur[name[len(key) + 1:]] = data
    return out


def _worker():
    info = get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def _prefetched(fetch_one, steps, depth):
    """(step, result) for each of `steps`, fetched by a thread up to `depth` ahead."""
    q = queue.Queue(max(1, depth))
    stop = threading.Event()

    def run():
        try:
            for k in steps:
                if stop.is_set():
                    return
                try:
                    q.put((k, fetch_one(k), None))
                except EmptyStep:
                    continue
        except BaseException as exc:   # re-raised in the consumer
            q.put((None, None, exc))
            return
        q.put(None)

    t = threading.Thread(target=run, name="getbatch-prefetch", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is None:
                return
            k, result, exc = item
            if exc is not None:
                raise exc
            yield k, result
    finally:
        stop.set()
        while t.is_alive():   # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                t.join(0.05)


class _Base(IterableDataset):
    def __init__(self, urls, prefetch, verify, attempts):
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        self.prefetch = prefetch
        self.verify = verify
        self.attempts = attempts
        self.epoch = 0
        self.start = 0           # the first step this iteration yields

    def _fetcher(self):
        return Fetcher(self.urls, attempts=self.attempts, verify=self.verify)

    def _steps(self):
        wid, nw = _worker()
        return range(self.start + wid, self.total_steps(), nw)

    def __iter__(self):
        fetcher = self._fetcher()
        for k, entries in _prefetched(lambda k: self._fetch(fetcher, k), self._steps(),
                                      self.prefetch):
            yield Batch(self._samples(entries), self.epoch, k)

    def _samples(self, entries):
        return entries


class EpochDataset(_Base):
    """The steps of rank `rank` of `world_size` (default: torch.distributed's, else 0 of the
    plan's) in epoch `epoch` of plan `plan`, served by the nodes at `urls`. `ahead`: steps the
    node warms after each one it serves (None: the node's default, 0)."""

    def __init__(self, urls, plan, epoch=0, rank=None, world_size=None, prefetch=2,
                 verify=True, attempts=6, ahead=None):
        super().__init__(urls, prefetch, verify, attempts)
        self.plan = plan
        self.ahead = ahead       # steps the node warms after each (None: the node's default)
        self.record = describe_plan(self.urls[0], plan)
        spec = self.record["spec"]
        if world_size is None:
            world_size = (dist.get_world_size() if dist.is_available() and dist.is_initialized()
                          else spec["world_size"])
        if rank is None:
            rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        self.rank, self.world_size = rank, world_size
        self.batch_size, self.drop_last = spec["batch_size"], spec["drop_last"]
        self.samples = self.record["samples"]
        self.grouped = spec["group"] == "sample"
        self.epoch = epoch
        self.offset = 0          # global samples of the epoch consumed before `start`

    def set_epoch(self, epoch):
        self.epoch, self.start, self.offset = epoch, 0, 0

    def total_steps(self):
        return step_count(self.samples, self.batch_size, self.world_size, self.drop_last,
                          self.offset)

    def _fetch(self, fetcher, k):
        return fetcher.step(self.plan, self.epoch, self.rank, k, world_size=self.world_size,
                            offset=self.offset, ahead=self.ahead)

    def _samples(self, entries):
        return group_samples(entries) if self.grouped else entries

    def state_dict(self):
        return {"plan": self.plan, "epoch": self.epoch, "step": self.start,
                "offset": self.offset, "world_size": self.world_size,
                "batch_size": self.batch_size}

    def load_state_dict(self, state):
        """Continue where `state` stopped; with another world size, from the same global
        sample (steps then count from there)."""
        if state["plan"] != self.plan:
            raise ValueError(f"the state is of plan {state['plan']}, this dataset reads "
                             f"{self.plan}")
        self.epoch = state["epoch"]
        if state["world_size"] == self.world_size:
            self.start, self.offset = state["step"], state["offset"]
        else:
            self.start = 0
            self.offset = state["offset"] + state["step"] * state["batch_size"] * state[
                "world_size"]


class BatchesDataset(_Base):
    """Batches the user chose: `batches` is a list of lists of object names (or of MossIn
    dicts, e.g. {"objname": "s.tar", "archpath": "x.jpg"}) of `bucket`."""

    def __init__(self, urls, batches, bucket=None, provider="ais", prefetch=2, verify=True,
                 attempts=6):
        super().__init__(urls, prefetch, verify, attempts)
        self.batches = batches
        self.bucket, self.provider = bucket, provider

    def total_steps(self):
        return len(self.batches)

    def _fetch(self, fetcher, k):
        return fetcher.names(self.batches[k], self.bucket, self.provider)

    def state_dict(self):
        return {"step": self.start}

    def load_state_dict(self, state):
        self.start = state["step"]


def _as_is(batch):
    """A Batch is handed over as it is (default_convert would copy it)."""
    return batch


class EpochLoader:
    """A DataLoader over a getbatch dataset that knows which step the training loop got
    last: its `state_dict()` is what a checkpoint keeps."""

    def __init__(self, dataset, num_workers=0, **kw):
        self.dataset = dataset
        self.num_workers = num_workers
        self.kw = kw

    def __iter__(self):
        kw = dict({"collate_fn": _as_is}, **self.kw)
        loader = DataLoader(self.dataset, batch_size=None, num_workers=self.num_workers, **kw)
        for batch in loader:
            self.dataset.start = batch.step + 1
            yield batch
        self.dataset.start = self.dataset.total_steps()

    def state_dict(self):
        return self.dataset.state_dict()

    def load_state_dict(self, state):
        self.dataset.load_state_dict(state)
