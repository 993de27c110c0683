"""Admission control: a GetBatch beyond the node's budgets gets 429 with Retry-After, at once.

Budgets (runtime settings, so an operator can tighten them under load):
- `max_batches`: GetBatch requests the node runs at once, across all its worker processes;
- `batch_memory`: what running batches may reserve together; each reserves its `window`
  (the decompressed members it may hold) plus RESERVE_EXTRA for its buffers, so the memory
  budget admits batch_memory // (window + RESERVE_EXTRA) batches;
- `min_free_memory`: the machine's available memory (MemAvailable) below it refuses new
  batches whatever the counts.

The count is shared by the node's processes through byte-range locks on one file,
`<data_dir>/.sys/batch-slots`: slot i is byte i; a batch holds a slot's lock from admission
until its body is closed. The kernel drops a process's locks when it dies, so a killed worker
leaks no slot, and no process has to clean up after another. A process keeps its own slots
in a set (POSIX locks are per process, so its own threads must not share one).

A rejected request costs a stat of nothing and a few fcntl calls; running batches are never
slowed or stopped by it: there is no queue and no throttling sleep, only the refusal. The SDK
retries 429 after Retry-After. Peer requests (a part of another node's batch) are not counted:
refusing them would starve batches already admitted elsewhere.
"""
import errno
import fcntl
import logging
import os
import threading
import time

from ..batch.assemble import BatchOutput
from .errors import AISError
from .retryafter import retry_after

log = logging.getLogger("getbatch.admit")

RESERVE_EXTRA = 4 << 20   # emit buffer, iterator chunks, plan: held besides the window
MEMINFO_EVERY = 1.0       # seconds between reads of /proc/meminfo
REPORT_EVERY = 10.0       # refusals are logged in one line per period
SLOTS_FILE = "batch-slots"


class Slots:
    """Up to n concurrent holders across processes: byte-range locks on one file."""

    def __init__(self, path):
        self.path = path
        self._fd = None
        self._pid = None
        self._mine = set()
        self._lock = threading.Lock()

    def _file(self):
        if self._pid != os.getpid():  # after a fork, locks are the parent's, not ours
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            self._pid, self._mine = os.getpid(), set()
        return self._fd

    def take(self, n):
        """A free slot below `n`, now held; None when all are taken."""
        with self._lock:
            fd = self._file()
            for i in range(n):
                if i in self._mine:
                    continue
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, i, os.SEEK_SET)
                except OSError as exc:
                    if exc.errno in (errno.EAGAIN, errno.EACCES):
                        continue
                    raise
                self._mine.add(i)
                return i
        return None

    def give(self, i):
        with self._lock:
            if i in self._mine and self._pid == os.getpid():
                fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, i, os.SEEK_SET)
                self._mine.discard(i)

    def held(self):
        """Slots this process holds (tests, logs)."""
        return len(self._mine)


def mem_available():
    """Bytes of memory the machine can give without swapping (MemAvailable); None if unknown."""
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class Admission:
    def __init__(self, config, data_dir):
        """`config`: the node's settings (a LiveConfig: budgets are read per request)."""
        self.config = config
        self.slots = Slots(os.path.join(data_dir, ".sys", SLOTS_FILE))
        self._mem = (0.0, None)
        self._refused = 0
        self._last_reason = ""
        self._reported = float("-inf")
        self._count_lock = threading.Lock()

    def _available(self):
        t, avail = self._mem
        now = time.monotonic()
        if now - t >= MEMINFO_EVERY:
            avail = mem_available()
            self._mem = (now, avail)
        return avail

    def budget(self, cfg):
        """(slots, what limits them) under `cfg`; slots None when nothing does."""
        limits = []
        if cfg.max_batches:
            limits.append((cfg.max_batches, f"max_batches {cfg.max_batches}"))
        if cfg.batch_memory:
            per = cfg.window + RESERVE_EXTRA
            limits.append((max(1, cfg.batch_memory // per),
                           f"batch_memory {cfg.batch_memory >> 20} MiB at "
                           f"{per >> 20} MiB a batch"))
        return min(limits) if limits else (None, "")

    def admit(self):
        """A ticket to release when the batch ends; raises 429 when a budget is exhausted."""
        cfg = self.config.current()
        if cfg.min_free_memory:
            avail = self._available()
            if avail is not None and avail < cfg.min_free_memory:
                self._refuse(f"the machine has {avail >> 20} MiB of memory available, less "
                             f"than min_free_memory {cfg.min_free_memory >> 20} MiB", "memory")
        n, why = self.budget(cfg)
        if n is None:
            return None
        slot = self.slots.take(n)
        if slot is None:
            self._refuse(f"{n} batches running already ({why})", "batches")
        return slot

    def release(self, ticket):
        if ticket is not None:
            self.slots.give(ticket)

    def _refuse(self, reason, cause):
        now = time.monotonic()
        with self._count_lock:
            self._refused += 1
            self._last_reason = reason
            if now - self._reported >= REPORT_EVERY:
                log.warning("GetBatch refused with 429 (%d since the last report): %s",
                            self._refused, reason)
                self._refused, self._reported = 0, now
        raise AISError(429, f"node busy: {reason}; retry after {retry_after(cause)} s",
                       cause=cause)


class Admitted:
    """A GetBatch resource behind admission control: each request holds a slot from before
    its body is read until its response body is closed (sent, aborted, or never started)."""

    def __init__(self, resource, admission):
        self.resource = resource
        self.admission = admission

    def _run(self, responder, req, resp, *args, **kwargs):
        ticket = self.admission.admit()
        if ticket is None:
            return responder(req, resp, *args, **kwargs)
        try:
            responder(req, resp, *args, **kwargs)
        except BaseException:
            self.admission.release(ticket)
            raise
        out = resp.stream
        if not isinstance(out, BatchOutput):  # a redirect (coloc), or nothing to send
            self.admission.release(ticket)
            return
        out.also_on_close(lambda o: self.admission.release(ticket))

    def on_get(self, req, resp, **kwargs):
        self._run(self.resource.on_get, req, resp, **kwargs)

    def on_get_extra(self, req, resp, **kwargs):
        self.resource.on_get_extra(req, resp, **kwargs)
