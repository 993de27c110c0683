"""Admission control: two tiers, as AIS has. A GetBatch beyond the node's running budget
waits for a slot (the throttle tier); past the waiting budget, after `admit_wait`, or while
memory or disk is short, it gets 429 with Retry-After.

Budgets (runtime settings, so an operator can tighten them under load):
- `max_batches`: GetBatch requests the node runs at once, across all its worker processes;
- `batch_memory`: what running batches may reserve together; each reserves its `window`
  (the decompressed members it may hold) plus RESERVE_EXTRA for its buffers, so the memory
  budget admits batch_memory // (window + RESERVE_EXTRA) batches;
- `max_waiting`, `admit_wait`: beyond those running, this many more may wait, each at most
  `admit_wait`, for a running one to end (a batch that waited runs without warm-up: the node
  is loaded, and its disks are busy already);
- `min_free_memory`, `min_free_disk`: the machine's available memory (MemAvailable), or the
  free space of the data directory's file system (inflate cache, spill and remote cache files
  live there) below it refuses new batches whatever the counts.

Why wait rather than refuse: a refused SDK client sleeps its Retry-After (whole seconds), and a
slot freed meanwhile stays idle; a waiting batch takes it within a poll. Measured in a storm
(bench/bench_admission.py, bench/RESULTS.md "Admission under a storm"): more items per second
at saturation and far fewer 429s than refusing at once (`admit_wait = 0`, the old behaviour).

The counts are shared by the node's processes through byte-range locks on files in
`<data_dir>/.sys/`: slot i is byte i; a batch holds a slot's lock from admission until its
body is closed, a waiter a byte of the waiting file while it waits. The kernel drops a
process's locks when it dies, so a killed worker leaks no slot, and no process has to clean
up after another. A process keeps its own slots in a set (POSIX locks are per process, so its
own threads must not share one). A waiter polls (a slot freed by another process has no other
signal), and is woken at once when its own process frees one.

Running batches are never slowed or stopped by admission. Peer requests (a part of another
node's batch) are not counted: refusing them would starve batches already admitted elsewhere.
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
MEMINFO_EVERY = 1.0       # seconds between reads of /proc/meminfo and statvfs
POLL_FIRST, POLL_MOST = 0.002, 0.05   # seconds between a waiter's looks, doubling
REPORT_EVERY = 10.0       # refusals are logged in one line per period
SLOTS_FILE = "batch-slots"
WAITING_FILE = "batch-waiting"


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


def disk_free(path):
    """Bytes free to an unprivileged writer on `path`'s file system; None if unknown."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


class Admission:
    def __init__(self, config, data_dir):
        """`config`: the node's settings (a LiveConfig: budgets are read per request)."""
        self.config = config
        self.data_dir = data_dir
        self.slots = Slots(os.path.join(data_dir, ".sys", SLOTS_FILE))
        self.waiting = Slots(os.path.join(data_dir, ".sys", WAITING_FILE))
        self._freed = threading.Condition()
        self._probes = {}   # what -> (when read, value)
        self._refused = 0
        self._last_reason = ""
        self._reported = float("-inf")
        self._count_lock = threading.Lock()

    def _probe(self, what, read):
        """`read()`, at most once per MEMINFO_EVERY for each `what`."""
        t, value = self._probes.get(what, (float("-inf"), None))
        now = time.monotonic()
        if now - t >= MEMINFO_EVERY:
            value = read()
            self._probes[what] = (now, value)
        return value

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

    def admit(self, context=None):
        """A Ticket to release when the batch ends (None when nothing limits batches);
        raises 429 when a budget is exhausted. A wait is recorded in `context.throttle_ns`
        (a request's context: the metrics count it)."""
        cfg = self.config.current()
        self._check_machine(cfg)
        n, why = self.budget(cfg)
        if n is None:
            return None
        slot = self.slots.take(n)
        if slot is not None:
            return Ticket(slot, waited=False)
        if not (cfg.max_waiting and cfg.admit_wait):
            self._refuse(f"{n} batches running already ({why})", "batches")
        place = self.waiting.take(cfg.max_waiting)
        if place is None:
            self._refuse(f"{n} batches running and {cfg.max_waiting} waiting already "
                         f"({why}, max_waiting {cfg.max_waiting})", "batches")
        t0 = time.monotonic_ns()
        try:
            slot = self._wait(n, cfg.admit_wait)
        finally:
            self.waiting.give(place)
            if context is not None:
                context.throttle_ns = time.monotonic_ns() - t0
        if slot is None:
            self._refuse(f"{n} batches running already ({why}); none ended within "
                         f"admit_wait {cfg.admit_wait:g}s", "batches")
        return Ticket(slot, waited=True)

    def _check_machine(self, cfg):
        if cfg.min_free_memory:
            avail = self._probe("memory", mem_available)
            if avail is not None and avail < cfg.min_free_memory:
                self._refuse(f"the machine has {avail >> 20} MiB of memory available, less "
                             f"than min_free_memory {cfg.min_free_memory >> 20} MiB", "memory")
        if cfg.min_free_disk:
            free = self._probe("disk", lambda: disk_free(self.data_dir))
            if free is not None and free < cfg.min_free_disk:
                self._refuse(f"the data directory's disk has {free >> 20} MiB free, less than "
                             f"min_free_disk {cfg.min_free_disk >> 20} MiB", "disk")

    def _wait(self, n, patience):
        """A slot below `n` taken within `patience` seconds, else None."""
        deadline = time.monotonic() + patience
        pause = POLL_FIRST
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            with self._freed:
                self._freed.wait(min(pause, left))
            slot = self.slots.take(n)
            if slot is not None:
                return slot
            pause = min(pause * 2, POLL_MOST)

    def release(self, ticket):
        if ticket is not None:
            self.slots.give(ticket.slot)
            with self._freed:
                self._freed.notify()

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


class Ticket:
    """An admitted batch's slot; `waited`: it had to wait for it (the node is loaded)."""
    __slots__ = ("slot", "waited")

    def __init__(self, slot, waited):
        self.slot = slot
        self.waited = waited


class Admitted:
    """A GetBatch resource behind admission control: each request holds a slot from before
    its body is read until its response body is closed (sent, aborted, or never started)."""

    def __init__(self, resource, admission):
        self.resource = resource
        self.admission = admission

    def _run(self, responder, req, resp, *args, **kwargs):
        ticket = self.admission.admit(req.context)
        if ticket is None:
            return responder(req, resp, *args, **kwargs)
        req.context.loaded = ticket.waited   # moss.py: no warm-up on a loaded node
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
