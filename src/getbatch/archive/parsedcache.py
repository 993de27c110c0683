"""The process-wide memory of parsed shards: TAR indexes (index.py) and ZIP central
directories (zipshard.py, ranged.py), in one LRU bounded by bytes, not by count.

A parsed shard costs memory in proportion to its members, not its size: a 20 MB .zip of
200,000 empty members parses to ~50 MB of Python objects. Each value says what it weighs
(`weight`, an estimate from its member count and name lengths); together they stay within
`index_memory` bytes per process (`configure`), and one heavier than that is used by the
request that parsed it and then dropped.

Freed parsed shards are many small objects: the C allocator keeps their pages (a worker kept
+180 MiB after a batch of twelve such shards with only one of them cached). Once heavy ones
were dropped, `trim()` (called when a batch's shards are closed) hands the free pages back.
"""
import ctypes
import ctypes.util
import threading

from .lru import LRU

DEFAULT_BYTES = 64 << 20
PER_MEMBER = 256        # bytes of Python objects per member besides its name (measured: 213-244)
TRIM_AFTER = 16 << 20   # bytes of parsed shards dropped after which trim() returns memory


def estimate(names):
    """Bytes a parsed shard with member names `names` holds."""
    return PER_MEMBER * len(names) + sum(map(len, names))


class _Dropped:
    def __init__(self):
        self.bytes = 0
        self.lock = threading.Lock()

    def __call__(self, weight):
        with self.lock:
            self.bytes += weight

    def take(self):
        with self.lock:
            n, self.bytes = self.bytes, 0
            return n


_dropped = _Dropped()
CACHE = LRU(DEFAULT_BYTES, lambda value: value.weight, _dropped)


def _malloc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (OSError, AttributeError, TypeError):  # not glibc: nothing to ask
        return None


_trim = _malloc_trim()


def configure(max_bytes):
    """Bound the parsed shards kept in this process to `max_bytes` (0: keep none)."""
    CACHE.maxsize = max_bytes


def trim():
    """Give freed memory back to the system when heavy parsed shards were dropped since the
    last call (once their last user let go of them: call it after closing shards)."""
    if _dropped.take() >= TRIM_AFTER and _trim is not None:
        _trim(0)
