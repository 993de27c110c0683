"""The per-request limit on decompressed bytes, and the identity of a shard version.

Compressed shards (.tgz, .tar.lz4, deflated ZIP members) charge every byte they inflate, index
scans included, to the `InflateBudget` they were opened with; going over raises InflateLimit
naming the shard and the limit. A planner also asks up front (`require`) for the bytes its
items will need at least, so a decompression bomb is refused before any response is started.
"""
import hashlib
from collections.abc import Iterable

from .errors import InflateLimit

MAX_INFLATE = 4 << 30  # default per-request limit (the `max_inflate` setting)


class InflateBudget:
    """Decompressed bytes one request may produce; `limit` 0 means no limit. `used` counts
    every byte charged (also without a limit), for diagnostics and tests. One request, one
    thread: no locking."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int = MAX_INFLATE) -> None:
        self.limit = limit
        self.used = 0

    def remaining(self) -> int | None:
        """Bytes still allowed (None: unlimited)."""
        return None if not self.limit else max(0, self.limit - self.used)

    def charge(self, n: int, shard: object) -> None:
        """Count `n` freshly decompressed bytes of `shard`; InflateLimit once over the limit."""
        self.used += n
        if self.limit and self.used > self.limit:
            raise InflateLimit(shard, f"decompressed more than {self.limit} bytes for one request, "
                                      "the max_inflate limit (a decompression bomb, or a shard "
                                      "that needs a larger max_inflate)")

    def require(self, n: int, shard: object) -> None:
        """InflateLimit now if `n` more bytes will certainly be decompressed and do not fit."""
        if self.limit and self.used + n > self.limit:
            raise InflateLimit(shard, f"reading the requested members decompresses at least "
                                      f"{self.used + n} bytes, over the max_inflate limit of "
                                      f"{self.limit} bytes per request")


def charge(budget: InflateBudget | None, n: int, shard: object) -> None:
    """`budget.charge(n, shard)` when the shard has a budget."""
    if budget is not None:
        budget.charge(n, shard)


def version_digest(fmt: str, identity: Iterable[object]) -> bytes:
    """32-byte digest of a shard version (its shardfile.Identity) and its format, naming
    derived data (cache files)."""
    return hashlib.sha256(repr((fmt,) + tuple(identity)).encode()).digest()
