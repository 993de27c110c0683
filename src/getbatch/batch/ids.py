"""BatchIds: the ids of GetBatch requests (jobs, logs, the multipart metadata's `uuid`)."""
import itertools
import os

BATCH_ID_PREFIX = "gbt-"


class BatchIds:
    """Ids unique on a node: a random prefix drawn when made and a counter; cheaper than uuid4
    (a getrandom syscall per request). Each app makes its own (server/noderuntime.py) in its
    worker process, after the fork, so workers never draw the same prefix."""

    def __init__(self) -> None:
        self._prefix = BATCH_ID_PREFIX + os.urandom(4).hex()
        self._count = itertools.count(1)   # next() on it is atomic: no lock needed

    def next(self) -> str:
        return f"{self._prefix}{next(self._count):x}"
