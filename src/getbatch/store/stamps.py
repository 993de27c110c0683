"""Version stamps: which of two copies of one name is the newer, on every node alike.

A stamp names one write (a PUT or a DELETE) of a name on a cluster: a hybrid logical clock
reading of the node that accepted the write, then that node's id:

    0189c5e3a2f40003.n1      <16 hex digits: milliseconds << 16 | counter>.<node id>

It is assigned once per write and travels with the bytes to every copy (an xattr beside the
checksum; a tombstone file for a delete). Stamps compare as strings: the fixed-width clock
first, the node id breaking ties, so two writes of one name on two nodes never tie, and ""
(an object written before stamps, or on a single node) is older than any stamp.

The clock is a hybrid logical clock: it never runs behind the wall clock, never repeats,
and jumps past every stamp it observes (a replica received, a copy read from a peer), so a
write accepted after a node has seen a version is stamped newer than that version even when
that node's wall clock is behind the writer's.
"""
import threading
import time

_COUNTER_BITS = 16
_HEX = 16


def clock_of(stamp):
    """The clock part of a stamp as an int (0 for "" or a malformed stamp)."""
    try:
        return int(stamp[:_HEX], 16)
    except ValueError:
        return 0


def wall_ms(stamp):
    """Milliseconds since the epoch at which the stamp was made (0 for "")."""
    return clock_of(stamp) >> _COUNTER_BITS


class Clock:
    """A hybrid logical clock of one process of node `node_id` (thread-safe)."""

    def __init__(self, node_id):
        self.node_id = node_id
        self._last = 0
        self._lock = threading.Lock()

    def now(self, after=""):
        """A new stamp, newer than any made or observed here and than `after`."""
        wall = time.time_ns() // 1_000_000 << _COUNTER_BITS
        with self._lock:
            self._last = max(wall, self._last + 1, clock_of(after) + 1)
            value = self._last
        return f"{value:0{_HEX}x}.{self.node_id}"

    def observe(self, stamp):
        """Move past a stamp made elsewhere."""
        seen = clock_of(stamp)
        if seen > self._last:
            with self._lock:
                self._last = max(self._last, seen)
