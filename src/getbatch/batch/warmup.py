"""Warm-up: ask the kernel to read a batch's next local items while earlier ones are sent.

A batch sends its items in order; on a cold page cache each file's first read waits for the
disk, one file at a time. While the emit loop sends one stretch of items, a look-ahead
thread hands the kernel the next stretch with posix_fadvise(WILLNEED): it queues their reads
at once (deep device queues, no waiting per file) and returns, so one thread can keep far
ahead. At most AHEAD_BYTES and AHEAD_ITEMS are asked for beyond the item being sent, so the
warmed pages are still in the cache when their turn comes, and of each item at most its
first HEAD_BYTES; items of BIG_ITEM and more are not warmed.

`warmup_workers` (a runtime setting, AIS's knob) is the number of look-ahead threads of a
node's `WarmPool` (one per app, server/moss.py); -1 or 0 turn it off. As in AIS it is best
effort: a batch hands a stretch to the pool only when a thread is free, and never waits for
one. Only items read from a local fd are warmed (objects, and members of uncompressed shards);
sources not yet opened are left alone. The benchmark is bench/warmup.py (bench/RESULTS.md).
"""
import logging
import os
import queue
import threading

log = logging.getLogger("getbatch.batch")

AHEAD_BYTES = 16 << 20
HEAD_BYTES = 1 << 20     # of an item only its start is asked for (as AIS: 1 MiB): once it is
                         # being read, the kernel's own sequential readahead takes over
BIG_ITEM = 4 << 20       # items this big are left to that readahead: warming their start
                         # measured no faster, cold or warm (bench/RESULTS.md)
AHEAD_ITEMS = 512
STEP_BYTES = 4 << 20     # the emit loop reports its progress at least this often
STEP_ITEMS = 128

_WILLNEED = getattr(os, "POSIX_FADV_WILLNEED", None)


class WarmPool:
    """Look-ahead threads of one app: best-effort tasks, dropped when all are busy."""

    def __init__(self):
        self._q = queue.Queue()
        self._threads = 0
        self._busy = 0
        self._lock = threading.Lock()
        self._pid = os.getpid()

    @property
    def busy(self):
        """Tasks running or queued."""
        return self._busy

    def offer(self, task, workers):
        """Run `task` on a free thread (starting one if fewer than `workers` exist); False
        when every thread is busy."""
        with self._lock:
            if self._pid != os.getpid():  # threads do not survive a fork
                self._q, self._threads, self._busy, self._pid = queue.Queue(), 0, 0, os.getpid()
            if self._busy >= workers:
                return False
            self._busy += 1
            if self._threads < workers and self._threads < self._busy:
                self._threads += 1
                threading.Thread(target=self._run, name="warmup", daemon=True).start()
        self._q.put(task)
        return True

    def _run(self):
        while True:
            task = self._q.get()
            try:
                task()
            except Exception:  # a hint failed: the send reads the data anyway
                log.debug("warm-up task failed", exc_info=True)
            finally:
                with self._lock:
                    self._busy -= 1


def _advise(ranges):
    for fd, off, n in ranges:
        try:
            os.posix_fadvise(fd, off, n, _WILLNEED)
        except OSError:
            pass  # closed meanwhile (the batch was aborted): nothing to warm


class Lookahead:
    """The warm-up of one batch's items (a Plan's `items`) on `pool` (a WarmPool) with up to
    `workers` threads; `advance(i)` as item i is sent."""

    def __init__(self, items, workers, pool):
        self.items = items
        self.workers = workers
        self.pool = pool
        self.warmed = 0     # items before this index were asked for

    def advance(self, pos):
        start = max(self.warmed, pos)
        if start >= len(self.items) or _WILLNEED is None:
            return
        ranges, budget, i = [], AHEAD_BYTES, start
        end = min(len(self.items), pos + AHEAD_ITEMS)
        while i < end and budget > 0:
            it = self.items[i]
            src = it.src
            i += 1
            if src is None or not it.size or it.size >= BIG_ITEM or it.unopened:
                continue  # nothing to read, left to readahead, or not open yet (the sender's)
            fd = src.fileno()
            if fd is not None and fd >= 0:
                n = min(it.size, budget, HEAD_BYTES)
                ranges.append((fd, it.offset, n))
                budget -= n
        if not ranges or self.pool.offer(lambda: _advise(ranges), self.workers):
            self.warmed = i
