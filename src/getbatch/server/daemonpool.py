"""The worker's request threads: a thread pool whose threads are daemon threads, so that a
stopping worker decides how long it waits for its requests (an executor's threads are joined
at interpreter exit however long a handler blocks)."""
import queue
import threading
from concurrent.futures import Future


class DaemonPool:
    """A ThreadPoolExecutor's submit(), on `n` daemon threads. With `most` above `n`, one
    more thread starts whenever a job would otherwise wait, up to `most`."""

    def __init__(self, n, most=0, name="request"):
        self._jobs = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = self._queued = 0
        self._most = max(n, most)
        self._name = name
        self._threads = []
        for _ in range(n):
            self._spawn()

    def _spawn(self):
        t = threading.Thread(target=self._run, name=f"{self._name}-{len(self._threads)}",
                             daemon=True)
        self._threads.append(t)
        t.start()

    def submit(self, fn, *args):
        fut = Future()
        with self._lock:
            self._queued += 1
            if self._queued > self._idle and len(self._threads) < self._most:
                self._spawn()
        self._jobs.put((fut, fn, args))
        return fut

    def _run(self):
        while True:
            with self._lock:
                self._idle += 1
            job = self._jobs.get()
            with self._lock:
                self._idle -= 1
                self._queued -= job is not None
            if job is None:
                return
            fut, fn, args = job
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn(*args))
                except BaseException as exc:
                    fut.set_exception(exc)

    def shutdown(self, wait=False):
        with self._lock:
            self._most = 0
        for _ in self._threads:
            self._jobs.put(None)
        if wait:
            for t in self._threads:
                t.join()
