"""LRU: a small thread-safe least-recently-used map, for the per-process shard caches."""
import threading
from collections import OrderedDict


class LRU:
    """At most `maxsize` entries; `get` marks an entry as recently used, `put` evicts the
    least recently used ones beyond the limit. `maxsize` may be changed at any time."""

    def __init__(self, maxsize):
        self.maxsize = maxsize
        self._data = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key, value):
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def clear(self):
        with self._lock:
            self._data.clear()

    def __len__(self):
        return len(self._data)
