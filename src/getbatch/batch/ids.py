"""BatchIds: the ids of GetBatch requests (jobs, logs, the multipart metadata's `uuid`)."""
import itertools
import os
import threading

BATCH_ID_PREFIX = "gbt-"


class BatchIds:
    """Ids unique on a node: a random prefix per process and a counter; cheaper than uuid4 (a
    getrandom syscall per request). Each app has its own (server/noderuntime.py); the prefix
    is drawn again after a fork, for an app made before its server forks workers (a WSGI
    server preloading getbatch.server.wsgi)."""

    def __init__(self) -> None:
        self._count = itertools.count(1)
        self._lock = threading.Lock()
        self._pid = -1
        self._prefix = ""

    def next(self) -> str:
        with self._lock:
            if self._pid != os.getpid():
                self._pid, self._prefix = os.getpid(), BATCH_ID_PREFIX + os.urandom(4).hex()
            return f"{self._prefix}{next(self._count):x}"
