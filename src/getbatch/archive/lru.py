"""LRU: a small thread-safe least-recently-used map, for the per-process caches."""
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


def _one(value: Any) -> int:
    return 1


class LRU:
    """Entries whose weights (`weigh(value)`, 1 each by default: a count) add up to at most
    `maxsize`; `get` marks an entry as recently used, `put` evicts the least recently used ones
    beyond the limit, and does not keep a value heavier than the whole limit. `maxsize` may be
    changed at any time (the next `put` applies it)."""

    def __init__(self, maxsize: int, weigh: Callable[[Any], int] = _one,
                 dropped: Callable[[int], object] | None = None) -> None:
        """`dropped(weight)`: called for each value evicted, or not kept for its weight."""
        self.maxsize = maxsize
        self.weight = 0
        self._weigh = weigh
        self._dropped = dropped
        self._data: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()  # key -> (value, weight)
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        with self._lock:
            item = self._data.get(key)
            if item is None:
                return None
            self._data.move_to_end(key)
            return item[0]

    def put(self, key: Hashable, value: Any) -> None:
        w = self._weigh(value)
        gone: list[int] = []
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self.weight -= old[1]
            if w <= self.maxsize:
                self._data[key] = (value, w)
                self.weight += w
            else:
                gone.append(w)
            while self.weight > self.maxsize:
                gone.append(self._data.popitem(last=False)[1][1])
                self.weight -= gone[-1]
        if self._dropped is not None:
            for w in gone:
                self._dropped(w)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.weight = 0

    def __len__(self) -> int:
        return len(self._data)
