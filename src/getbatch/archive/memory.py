"""ShardMemory: what is remembered of shards between one open and the next.

- Parsed shards: TAR indexes (index.py) and ZIP central directories (zipshard.py, ranged.py),
  in one LRU bounded by bytes, not by count. A parsed shard costs memory in proportion to its
  members, not its size: a 20 MB .zip of 200,000 empty members parses to ~50 MB of Python
  objects. Each value says what it weighs (`weight`, an estimate from its member count and
  name lengths); together they stay within `max_bytes`, and one heavier than that is used by
  the request that parsed it and then dropped.
- Parked decompression passes of .tgz/.tar.lz4 shards (tarshard.py): a pass that stopped
  before the end of the stream, kept so that the next read further on continues it; at most
  `parked` of them, least recently parked dropped first.
- `stats`: counts of index hits, loads, builds, saves and rejects (tests, diagnostics).

A server node has one per app (its storage makes it, sized by `index_memory`), so the nodes of
an in-process cluster remember nothing of each other's shards. Library callers may pass their
own to `open_shard(..., memory=...)`; without one, shards share `DEFAULT`, this module's.

Freed parsed shards are many small objects: the C allocator keeps their pages (a worker kept
+180 MiB after a batch of twelve such shards with only one of them cached). Once heavy ones
were dropped, `trim()` (called when a batch's shards are closed) hands the free pages back.
"""
import ctypes
import ctypes.util
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection
from typing import Any

from .lru import LRU

DEFAULT_BYTES = 64 << 20
PARKED_MAX = 8          # decompression passes kept: each holds its last chunk and a decompressor
PER_MEMBER = 256        # bytes of Python objects per member besides its name (measured: 213-244)
TRIM_AFTER = 16 << 20   # bytes of parsed shards dropped after which trim() returns memory


def estimate(names: Collection[str]) -> int:
    """Bytes a parsed shard with member names `names` holds."""
    return PER_MEMBER * len(names) + sum(map(len, names))


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (OSError, AttributeError, TypeError):  # not glibc: nothing to ask
        return None


_TRIM = _malloc_trim()


class ShardMemory:
    """Parsed shards within `max_bytes` (0: keep none), at most `parked` parked passes."""

    def __init__(self, max_bytes: int = DEFAULT_BYTES, parked: int = PARKED_MAX) -> None:
        self.parsed = LRU(max_bytes, lambda value: value.weight, self._dropped)
        self.parked_max = parked
        self.stats = {"hits": 0, "loads": 0, "builds": 0, "saves": 0, "rejects": 0}
        self._parked: OrderedDict[Any, Any] = OrderedDict()   # shard -> its idle pass, LRU
        self._lock = threading.Lock()
        self._dropped_bytes = 0

    @property
    def max_bytes(self) -> int:
        return self.parsed.maxsize

    @max_bytes.setter
    def max_bytes(self, n: int) -> None:
        self.parsed.maxsize = n

    def _dropped(self, weight: int) -> None:
        with self._lock:
            self._dropped_bytes += weight

    def trim(self) -> None:
        """Give freed memory back to the system when heavy parsed shards were dropped since the
        last call (once their last user let go of them: call it after closing shards)."""
        with self._lock:
            dropped, self._dropped_bytes = self._dropped_bytes, 0
        if dropped >= TRIM_AFTER and _TRIM is not None:
            _TRIM(0)

    def park(self, shard: Any, cursor: Any) -> None:
        """Keep `shard`'s idle decompression pass for its next read."""
        with self._lock:
            self._parked[shard] = cursor
            self._parked.move_to_end(shard)
            while len(self._parked) > self.parked_max:
                self._parked.popitem(last=False)

    def unpark(self, shard: Any) -> Any:
        """`shard`'s parked pass, taken out (None when it has none)."""
        with self._lock:
            return self._parked.pop(shard, None)

    def parked(self) -> list[Any]:
        """The shards whose passes are parked, least recently parked first."""
        with self._lock:
            return list(self._parked)

    def clear(self) -> None:
        """Forget every parsed shard and parked pass (as a new process would start)."""
        self.parsed.clear()
        with self._lock:
            self._parked.clear()


DEFAULT = ShardMemory()


def or_default(memory: ShardMemory | None) -> ShardMemory:
    """`memory`, or when None the library's DEFAULT (looked up now: a caller may replace it)."""
    return DEFAULT if memory is None else memory
