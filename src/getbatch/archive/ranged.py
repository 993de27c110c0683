"""Shards read through ranged reads of a remote object: only the index and the wanted members move.

A `Mirror` is a sparse, anonymous local file as long as the remote shard. Every byte fetched
through `fetch(offset, length) -> bytes` (a ranged GET pinned to one version of the object) is
written there at its own offset and the ranges present are tracked, so the TAR and ZIP readers
run unchanged on the mirror's fd, zero-copy paths included, once `ensure()` has fetched what they
are about to read. Every read path of the two shard classes below calls `ensure()` first: a hole
(zeros) is never read as data.

The index comes from ranged reads too: TAR headers walked one after another (`scan_pread`), with
a read-ahead window that grows while members are small (then the next headers are near) and
stays at one block when they are large; a ZIP's end records and central directory (two reads).
A TAR index is persisted under `key` (the remote URL) and belongs to `version` (the ETag).
"""
import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .errors import CorruptArchive
from .member import Member, member_range
from .memory import ShardMemory, or_default
from .shardfile import Identity
from .tarscan import scan_pread
from .tarshard import TarShard
from .zipcd import read_central_directory_pread
from .zipshard import ZipShard
from .zipformat import LOCAL

COALESCE = 64 << 10   # wanted ranges closer than this are fetched in one read
PIECE = 8 << 20       # a streamed member is fetched this much at a time
_SMALL_SPAN = 64 << 10
_AHEAD_MAX = 8 << 20
_REMEMBER_MAX = 64 << 20  # bigger members are not kept across requests
_HEADERS = 3 * 512    # a header, or a PAX header, its records and the member's own header

Extent = tuple[int, int]   # (offset, length)
# fetch(offset, length) -> exactly those bytes of the remote object version
Fetch = Callable[[int, int], bytes]
# parallel(fn, items): runs fn over items (map, an executor's map), its results iterated
Parallel = Callable[[Callable[[Extent], None], list[Extent]], Iterable[object]]


def anonymous_file(directory: str) -> int:
    """An fd of a new file that has no name (gone when closed)."""
    try:
        return os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    except (OSError, AttributeError):
        fd, path = tempfile.mkstemp(dir=directory)
        os.unlink(path)
        return fd


class Mirror:
    """The bytes of one remote object version fetched so far, at their offsets in a sparse file.
    `fetched` and `requests` count what moved (tests, benchmarks)."""

    def __init__(self, fetch: Fetch, size: int, tmp_dir: str, label: str,
                 parallel: Parallel = map,
                 recall: Callable[[int, int], bytes | None] | None = None,
                 remember: Callable[[int, bytes], object] | None = None) -> None:
        """`fetch(offset, length) -> bytes`: exactly those bytes of the object (raising on a
        changed object); `parallel(fn, items)`: how independent fetches run (an executor's map).
        `recall(offset, length) -> bytes or None` and `remember(offset, data)`: a cache of
        member extents kept across mirrors of the same version (see ensure_members)."""
        self.recall = recall
        self.remember = remember
        self.fetch_range = fetch
        self.size = size
        self.label = label
        self.parallel = parallel
        self.fd = anonymous_file(tmp_dir)
        self.fetched = 0
        self.requests = 0
        self._have: list[tuple[int, int]] = []   # sorted, disjoint [start, end) ranges present
        self._lock = threading.Lock()
        try:
            os.ftruncate(self.fd, size)
        except BaseException:
            self.close()
            raise

    def _gaps(self, start: int, end: int) -> list[tuple[int, int]]:
        gaps: list[tuple[int, int]] = []
        with self._lock:
            for a, b in self._have:
                if b <= start:
                    continue
                if a >= end:
                    break
                if a > start:
                    gaps.append((start, a))
                start = max(start, b)
                if start >= end:
                    break
        if start < end:
            gaps.append((start, end))
        return gaps

    def _add(self, start: int, end: int) -> None:
        with self._lock:
            merged: list[tuple[int, int]] = []
            for a, b in self._have:
                if b < start or a > end:
                    merged.append((a, b))
                else:
                    start, end = min(a, start), max(b, end)
            merged.append((start, end))
            merged.sort()
            self._have = merged

    def _get(self, gap: tuple[int, int]) -> None:
        start, end = gap
        data = self.fetch_range(start, end - start)
        if len(data) != end - start:
            raise CorruptArchive(self.label, f"remote read of bytes {start}-{end - 1} returned "
                                             f"{len(data)} bytes")
        self._put(start, data)
        with self._lock:
            self.fetched += end - start
            self.requests += 1

    def ensure(self, offset: int, length: int) -> None:
        """Fetch whatever of [offset, offset+length) is not here yet."""
        self.ensure_many([(offset, length)])

    def ensure_many(self, extents: Iterable[Extent]) -> None:
        """Fetch the missing parts of every (offset, length): ranges closer than COALESCE are
        merged into one read, and the reads run through `parallel`."""
        spans = sorted((max(0, o), min(self.size, o + n)) for o, n in extents if n > 0)
        merged: list[tuple[int, int]] = []
        for a, b in spans:
            if merged and a <= merged[-1][1] + COALESCE:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            elif a < b:
                merged.append((a, b))
        gaps = [g for a, b in merged for g in self._gaps(a, b)]
        if len(gaps) == 1:
            self._get(gaps[0])
        elif gaps:
            for _ in self.parallel(self._get, gaps):
                pass

    def ensure_members(self, extents: Iterable[Extent]) -> None:
        """ensure_many for members' extents, which `recall` may already hold (then they cost
        no request) and which `remember` keeps once fetched."""
        extents = [(o, n) for o, n in extents if n > 0 and self._gaps(o, o + n)]
        fetched = extents
        if self.recall is not None:
            fetched = []
            for o, n in extents:
                data = self.recall(o, n)
                if data is not None and len(data) == n:
                    self._put(o, data)
                else:
                    fetched.append((o, n))
        self.ensure_many(fetched)
        if self.remember is not None:
            for o, n in fetched:
                if n <= _REMEMBER_MAX:
                    self.remember(o, os.pread(self.fd, n, o))

    def _put(self, start: int, data: bytes) -> None:
        view = memoryview(data)
        pos = start
        while view:
            k = os.pwrite(self.fd, view, pos)
            view, pos = view[k:], pos + k
        self._add(start, start + len(data))

    def pread(self, length: int, offset: int) -> bytes:
        length = max(0, min(length, self.size - offset))
        self.ensure(offset, length)
        return os.pread(self.fd, length, offset)

    def scanner(self) -> Callable[[int, int], bytes]:
        """A pread for header walks: once the members seen are small (the next headers are
        then in the same read) it reads ahead 256 KiB, doubling with each read up to 8 MiB
        (the walk then moves about the whole shard, in few requests); else it reads just a
        member's header blocks."""
        state: dict[str, Any] = {"last": None, "spans": 0, "count": 0, "ahead": 128 << 10}

        def pread(length: int, offset: int) -> bytes:
            last = state["last"]
            if last is not None and offset > last:
                state["spans"] += offset - last
                state["count"] += 1
            state["last"] = offset
            small = state["count"] >= 2 and state["spans"] // state["count"] <= _SMALL_SPAN
            ahead = _HEADERS
            if small:
                ahead = state["ahead"] = min(state["ahead"] * 2, _AHEAD_MAX)
            if self._gaps(offset, offset + length):
                self.ensure(offset, max(length, min(ahead, self.size - offset)))
            return os.pread(self.fd, length, offset)
        return pread

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _identity(size: int, version: str) -> Identity:
    # no local file: the remote version alone (URL and ETag in `version`) names the bytes
    return Identity(0, 0, size, 0, 0, version)


class RangedTarShard(TarShard):
    """A remote plain .tar read through a Mirror."""

    def __init__(self, mirror: Mirror, *, name: str, version: str, index_dir: str | None = None,
                 key: str | None = None, memory: ShardMemory | None = None) -> None:
        self._mirror = mirror
        self.memory = or_default(memory)
        self._adopt(mirror.fd, name, _identity(mirror.size, version))
        self._load_index(key if key is not None else -1, index_dir if key else None)

    def _scan(self) -> list[Member]:
        return scan_pread(self._mirror.scanner(), self.size, shard=self.name)

    def prefetch(self, names: Iterable[str]) -> None:
        """Fetch the data of these members (coalesced, in parallel)."""
        self._mirror.ensure_members([TarShard.extent(self, n) for n in names])

    def extent(self, name: str) -> tuple[int, int]:
        ext = super().extent(name)
        self._mirror.ensure_members([ext])
        return ext

    def read(self, name: str) -> bytes:
        return self.read_many([name])[0]

    def read_many(self, names: Iterable[str]) -> list[bytes]:
        names = list(names)
        self.prefetch(names)
        return super().read_many(names)

    def iter_member(self, name: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        m = self.lookup(name)
        start, n = member_range(m, offset, length)
        return self._mirrored_chunks(m.offset + start, n)

    def _mirrored_chunks(self, offset: int, length: int) -> Iterator[bytes]:
        """The bytes [offset, offset+length) of the shard, fetched PIECE by PIECE as they go."""
        while length > 0:
            k = min(length, PIECE)
            self._mirror.ensure(offset, k)
            yield from self.file_chunks(offset, k)
            offset += k
            length -= k

    def _release(self, fd: int) -> None:
        self._mirror.close()


class RangedZipShard(ZipShard):
    """A remote .zip read through a Mirror: the central directory with two ranged reads, each
    member with one (its local header and data together), stored or deflated."""

    _SLACK = 256  # bytes of local extra field fetched beyond the central directory's guess

    def __init__(self, mirror: Mirror, *, name: str, version: str, index_dir: str | None = None,
                 key: str | None = None, memory: ShardMemory | None = None) -> None:
        self._mirror = mirror
        self.memory = or_default(memory)
        self._adopt(mirror.fd, name, _identity(mirror.size, version))
        self._load_directory()

    def _read_directory(self) -> list[Member]:
        return read_central_directory_pread(self._mirror.pread, self.identity.size, self.name)

    def _span(self, m: Member) -> Extent:
        """(offset, length) likely holding the member's local header and data."""
        return m.offset, LOCAL.size + len(m.name.encode("utf-8", "surrogateescape")) + \
            self._SLACK + max(m.csize, 0)

    def _local_header(self, offset: int) -> bytes:
        self._mirror.ensure(offset, LOCAL.size)
        return super()._local_header(offset)

    def _data_offset(self, m: Member) -> int:
        off = super()._data_offset(m)
        self._mirror.ensure(off, m.csize)
        return off

    def prefetch(self, names: Iterable[str]) -> None:
        self._mirror.ensure_members([self._span(self.lookup(n)) for n in names])

    def read_many(self, names: Iterable[str]) -> list[bytes]:
        names = list(names)
        self.prefetch(names)
        return super().read_many(names)

    def extent(self, name: str) -> tuple[int, int] | None:
        m = self.lookup(name)
        self._mirror.ensure_members([self._span(m)])
        self._data_offset(m)  # fetched before the CRC check reads it
        return super().extent(name)

    def iter_member(self, name: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        self._data_offset(self.lookup(name))
        return super().iter_member(name, offset, length)

    def _release(self, fd: int) -> None:
        self._mirror.close()
