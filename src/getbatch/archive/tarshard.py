"""TAR shard readers: plain .tar served with pread, and .tgz / .tar.lz4 read in streaming passes.

Plain TAR: the index (name -> data offset, size) comes from a header-only scan, so a member is
one pread and `extent()` lets the caller sendfile it. Compressed TAR: offsets live in the
decompressed stream, so `read_many` sorts the wanted members by offset, inflates the shard once
(stopping after the last one needed) and hands the bytes back in the caller's order; on a shard
never seen before the same single pass also builds the index. A pass that stopped is resumed
by the next read at a later offset (`passes` counts the restarts), so reading a shard's members
in file order, in windows or streamed one by one, inflates it once. With an InflateCache, the
first pass also writes the decompressed stream to a cache file, and from then on members are
ranges of that file (`extent()`), read like a plain TAR's. Every inflated byte is charged to
the shard's InflateBudget. Plain zlib/lz4 streaming beat libarchive for whole-shard reads here
(bench/RESULTS-archive-read.md); gzip is inflated with ISA-L when the optional `isal` package is
installed.
"""
import operator
import os
import types
import zlib
from collections.abc import Generator, Iterable, Iterator, Sequence
from contextlib import closing
from typing import Any, NoReturn

from . import index as _index
from . import tarscan
from .errors import ArchiveError, CorruptArchive, MemberNotFound
from .formats import detect_format
from .inflate import InflateBudget, version_digest
from .index import ShardIndex
from .inflatecache import CacheEntry, CacheFill, InflateCache, Stale
from .member import FILE, Member, Shard, member_range, name_variants
from .memory import ShardMemory, or_default

_inflate: types.ModuleType
try:  # ISA-L inflates about twice as fast as zlib; optional
    from isal import isal_zlib as _inflate
except ImportError:
    _inflate = zlib

_IN_CHUNK = 256 << 10  # compressed bytes per read
# Inflated bytes per decompressor call: bounds memory on a decompression bomb, and keeps each
# chunk cache-sized for the copies out of it.
_OUT_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_LZ4_MAGIC = b"\x04\x22\x4d\x18"


class TarShard(Shard):
    """An uncompressed .tar shard; members are read with os.pread from one kept-open fd."""

    format = "tar"
    _index: ShardIndex
    _files: dict[str, tuple[int, int]]   # its index's extents by name

    def __init__(self, path_or_fd: int | str | os.PathLike[str], *, name: str | None = None,
                 version: str = "", index_dir: str | None = None, length: int | None = None,
                 memory: ShardMemory | None = None) -> None:
        """`path_or_fd`: the shard's path, or an open read-only fd that the shard takes over
        (and closes, also when opening fails). `version`, `length`, `memory`: see open_shard."""
        self.memory = or_default(memory)
        self._attach(path_or_fd, name, version, length)
        self._load_index(self._fd, index_dir)

    def _load_index(self, key: int | str, index_dir: str | None) -> None:
        """Find the index (in memory, or persisted in `index_dir` under `key`: the fd, whose
        path names it, or a str) or build it with `_scan`; on failure the shard is closed."""
        try:
            self.size = self.identity.size
            self._index = _index.get(key, self.identity, self.format, self._scan, self.memory,
                                     index_dir=index_dir)
        except BaseException:
            self.close()
            raise
        self._files = self._index.files

    def _scan(self) -> list[Member]:
        return tarscan.scan_fd(self._fd, self.size, shard=self.name)

    def _let_go(self) -> None:
        self._index, self._files = _index.EMPTY, {}

    def members(self) -> list[Member]:
        return self._index.members()

    def lookup(self, name: str) -> Member:
        m = self._index.find(name)
        if m is None:
            raise MemberNotFound(self.name, name)
        return m

    def extent(self, name: str) -> tuple[int, int]:
        ext = self._files.get(name)
        if ext is None:
            m = self.lookup(name)
            ext = (m.offset, m.size)
        return ext

    def read(self, name: str) -> bytes:
        ext = self._files.get(name) or self.extent(name)
        data = os.pread(self._fd, ext[1], ext[0])
        if len(data) != ext[1]:
            self._short(ext)
        return data

    def read_many(self, names: Iterable[str]) -> list[bytes]:
        files = self._files
        pread = os.pread
        fd = self._fd
        out: list[bytes] = []
        for name in names:
            ext = files.get(name) or self.extent(name)
            data = pread(fd, ext[1], ext[0])
            if len(data) != ext[1]:
                self._short(ext)
            out.append(data)
        return out

    def iter_member(self, name: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        m = self.lookup(name)
        start, n = member_range(m, offset, length)
        return self.file_chunks(m.offset + start, n)

    def _short(self, ext: tuple[int, int]) -> NoReturn:
        raise CorruptArchive(self.name, f"truncated: member data at {ext[0]}+{ext[1]} is past the "
                                        "end of the file (shard changed after indexing?)")


def _decompressor(fmt: str) -> Any:
    if fmt == "tgz":
        return _inflate.decompressobj(31)
    import lz4.frame  # only .tar.lz4 shards need it
    return lz4.frame.LZ4FrameDecompressor()


def _stream(fd: int, fmt: str, shard: object, end: int) -> Iterator[bytes]:
    """Decompressed chunks of the shard open on `fd` (its first `end` bytes), from offset 0
    of the stream.

    Concatenated gzip members / lz4 frames are followed; bytes after the last one that do not
    start another are ignored (as gzip does). A stream that ends early is CorruptArchive.
    """
    gz = fmt == "tgz"
    magic = _GZIP_MAGIC if gz else _LZ4_MAGIC
    error = _inflate.error if gz else RuntimeError
    pos = 0
    data = b""
    dec = None
    members = 0
    while True:
        if dec is None:  # at a gzip member / lz4 frame boundary
            if len(data) < len(magic):
                more = os.pread(fd, min(_IN_CHUNK, end - pos), pos)
                pos += len(more)
                data += more
            if not data.startswith(magic):
                if members:
                    return
                raise CorruptArchive(shard, f"not a {fmt} stream (starts with {data[:4]!r})")
            dec = _decompressor(fmt)
            members += 1
        if not data:
            data = os.pread(fd, min(_IN_CHUNK, end - pos), pos)
            pos += len(data)
            if not data:
                raise CorruptArchive(shard, f"compressed stream truncated at byte {pos}")
        try:
            out = dec.decompress(data, _OUT_CHUNK)
            while True:
                if out:
                    yield out
                if dec.eof:
                    break
                # the output limit was hit: more is pending for the input already given
                if gz:
                    pending = dec.unconsumed_tail or len(out) == _OUT_CHUNK
                else:
                    pending = not dec.needs_input
                if not pending:
                    break
                if not out:  # never spin on a decompressor that makes no progress
                    raise CorruptArchive(shard, "decompressor made no progress")
                out = dec.decompress(dec.unconsumed_tail if gz else b"", _OUT_CHUNK)
        except error as exc:
            raise CorruptArchive(shard, f"bad compressed data: {exc}") from None
        if dec.eof:
            data = dec.unused_data or b""  # lz4 says None when nothing follows
            dec = None
        else:
            data = b""


class _Copier:
    """Copies byte ranges of the decompressed stream out of the chunks as they stream by.

    Targets (offset, size) must be added in increasing offset order; `done` turns true once
    every target added so far is complete.
    """

    __slots__ = ("targets", "bufs", "first")

    def __init__(self) -> None:
        self.targets: list[tuple[int, int]] = []
        self.bufs: list[Any] = []      # bytes when complete, else [bytearray, filled]
        self.first = 0      # index of the first incomplete target

    def add(self, offset: int, size: int) -> None:
        self.targets.append((offset, size))
        self.bufs.append(b"" if size == 0 else None)

    @property
    def done(self) -> bool:
        return self.first == len(self.targets)

    def feed(self, start: int, chunk: bytes) -> None:
        end = start + len(chunk)
        targets, bufs = self.targets, self.bufs
        i = self.first
        while i < len(targets):
            off, size = targets[i]
            if off >= end:
                break
            buf = bufs[i]
            if size == 0:
                pass
            elif buf is None and off >= start and off + size <= end:
                bufs[i] = chunk[off - start:off - start + size]
            else:
                if buf is None:
                    buf = bufs[i] = [bytearray(size), 0]
                filled = buf[1]
                lo = off + filled - start
                take = min(size - filled, end - (off + filled))
                buf[0][filled:filled + take] = memoryview(chunk)[lo:lo + take]
                buf[1] = filled + take
                if buf[1] < size:
                    break  # continues in the next chunk
                bufs[i] = bytes(buf[0])
            i += 1
            self.first = i

    def result(self, i: int) -> bytes:
        return self.bufs[i]


class _Cursor:
    """Where a decompression pass stands: its chunk iterator, and the chunk it last produced
    (starting at `start` in the decompressed stream)."""

    __slots__ = ("chunks", "start", "chunk")

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.start = 0
        self.chunk = b""


class CompressedTarShard(Shard):
    """A .tgz/.tar.gz or .tar.lz4 shard. Offsets in members() are in the decompressed stream.

    `passes` counts decompression passes over this shard started from the beginning of the
    stream (an index build, a read_many or iter_member that could not continue the previous
    pass, a cache fill); reads served from the inflate cache start none.
    """

    _entry: CacheEntry | None = None        # the CacheEntry members are served from
    _cache_tried = False
    _end: int | None = None          # end of the last member's data in the stream

    _index: ShardIndex | None   # None until the first scan pass builds it

    def __init__(self, path_or_fd: int | str | os.PathLike[str], *, name: str | None = None,
                 version: str = "", index_dir: str | None = None, format: str | None = None,
                 length: int | None = None, memory: ShardMemory | None = None) -> None:
        """`path_or_fd`, `name`, `version`, `length`, `memory`: as TarShard's; `format` is
        'tgz' or 'tar.lz4' (detected when None)."""
        self.memory = or_default(memory)
        self._attach(path_or_fd, name, version, length)
        self._index_dir = index_dir
        self.passes = 0
        try:
            self.format = format or detect_format(os.pread(self._fd, 512, 0), self.name)
            if self.format not in ("tgz", "tar.lz4"):
                raise ValueError(f"{self.name}: not a compressed tar ({self.format})")
            self._index = _index.cached(self._fd, self.identity, self.format, self.memory,
                                        index_dir=index_dir)
        except BaseException:
            self.close()
            raise

    def _let_go(self) -> None:
        self._index = _index.EMPTY

    def _store_index(self, members: list[Member], data_len: int) -> None:
        """Keep the index a scan pass built; `data_len`: decompressed bytes it covered."""
        self._index = _index.store(self._fd, self.identity, self.format, members, data_len,
                                   self.memory, index_dir=self._index_dir)

    def _ensure_index(self) -> ShardIndex:
        if self._index is None:
            self._scan_pass(())
        return self._index  # type: ignore[return-value]  # the pass stored it

    def members(self) -> list[Member]:
        return self._ensure_index().members()

    def lookup(self, name: str) -> Member:
        m = self._ensure_index().find(name)
        if m is None:
            raise MemberNotFound(self.name, name)
        return m

    def extent(self, name: str) -> tuple[int, int] | None:
        """(offset, size) of the member in the shard's inflate-cache file when the shard is
        served from one (fileno() is then that file's fd), else None: it must be inflated."""
        m = self.lookup(name)
        entry = self._cached()
        if entry is not None:
            try:
                entry.verify(m.offset, m.size)
                return m.offset, m.size
            except Stale:
                pass  # discarded (and logged): the member is decompressed instead
        return None

    def fileno(self) -> int:
        # once a cache entry was used, extent() ranges handed out refer to it, even if it has
        # been found stale since (those ranges were verified before they were handed out)
        return self._entry.fd if self._entry is not None else self._fd

    def inflate_cost(self, reads: Iterable[tuple[str, int, int | None]]) -> int:
        if self._cached() is not None:
            return 0
        # one pass from the start up to the furthest byte wanted
        ends: list[int] = []
        for name, offset, length in reads:
            m = self.lookup(name)
            start, n = member_range(m, offset, length)
            ends.append(m.offset + start + n)
        return max(ends, default=0)

    def read_many(self, names: Iterable[str]) -> list[bytes]:
        names = list(names)
        if self._index is None:
            return self._scan_pass(names)
        wanted = [self.lookup(n) for n in names]
        entry = self._cached()
        if entry is not None:
            try:
                return [entry.read(m.offset, m.size) for m in wanted]
            except Stale:
                pass
        order = sorted({m.offset: m for m in wanted}.values(), key=lambda m: m.offset)
        copier = _Copier()
        slot: dict[int, int] = {}
        for m in order:
            slot[m.offset] = len(copier.targets)
            copier.add(m.offset, m.size)
        if not copier.done:
            self._copy_pass(copier)
        return [copier.result(slot[m.offset]) for m in wanted]

    def iter_member(self, name: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        m = self.lookup(name)
        start, n = member_range(m, offset, length)
        return self._member_chunks(self._cached(), m.offset + start, n)

    def _member_chunks(self, entry: CacheEntry | None, pos: int, n: int) -> Iterator[bytes]:
        if entry is not None:
            try:
                for chunk in entry.chunks(pos, n):
                    yield chunk
                    pos += len(chunk)
                    n -= len(chunk)
                return
            except Stale:
                pass  # discarded (and logged): the rest of the member is decompressed
        yield from self._stream_range(pos, n)

    def _stream_range(self, pos: int, n: int) -> Iterator[bytes]:
        """Bytes [pos, pos+n) of the decompressed stream, chunk by chunk."""
        end = pos + n
        if n <= 0:
            return
        with closing(self._chunks_from(pos)) as chunks:
            for start, chunk in chunks:
                lo, hi = pos - start, min(len(chunk), end - start)
                yield chunk if lo == 0 and hi == len(chunk) else chunk[lo:hi]
                pos = start + hi
                if pos == end:
                    return
        raise CorruptArchive(self.name, f"truncated: decompressed stream ends at {pos}, before "
                                        f"the end of a member's data at {end}")

    def close(self) -> None:
        self.memory.unpark(self)
        if self._entry is not None:
            self._entry.close()
        super().close()

    # -- decompression passes

    def _chunks(self) -> Iterator[bytes]:
        """A new pass over the decompressed stream, from its start, charged to the budget."""
        self.passes += 1
        return _charged(_stream(self._fd, self.format, self.name, self.identity.size), self.budget, self.name)

    def _chunks_from(self, pos: int) -> Generator[tuple[int, bytes], None, None]:
        """(start, chunk) pairs of the decompressed stream, from the chunk holding `pos` on.
        Continues this shard's last pass when it has not gone past `pos` (a pass left before
        the stream's end is parked for that, in the shard's ShardMemory); readers may
        interleave: each one takes the parked pass, or starts its own."""
        cur = self.memory.unpark(self)
        if cur is None or cur.start > pos:
            cur = _Cursor(self._chunks())
        try:
            while True:
                end = cur.start + len(cur.chunk)
                if pos < end:
                    yield cur.start, cur.chunk
                    pos = end
                    continue
                try:
                    chunk = next(cur.chunks, None)
                except BaseException:
                    cur = None  # the pass is dead
                    raise
                if chunk is None:  # the end of the stream: nothing to resume
                    cur = None
                    return
                cur.start, cur.chunk = end, chunk
        finally:
            if cur is not None and self._fd >= 0:
                self.memory.park(self, cur)

    def _copy_pass(self, copier: _Copier) -> None:
        pos = copier.targets[copier.first][0]
        with closing(self._chunks_from(pos)) as chunks:
            for start, chunk in chunks:
                copier.feed(start, chunk)
                pos = start + len(chunk)
                if copier.done:
                    return
        raise CorruptArchive(self.name, f"truncated: decompressed stream ends at {pos}, "
                                        "before a member's data")

    def _scan_pass(self, names: Sequence[str]) -> list[bytes]:
        """One pass that scans every header (building the index) and captures the data of the
        first regular member of each name that `names` (or their variants) may resolve to;
        with an inflate cache, it also writes the cache file."""
        fill = self._scan_fill()
        try:
            return self._scan(names, fill)
        finally:
            if fill is not None:
                fill.abort()  # nothing once committed, or abandoned

    def _scan(self, names: Sequence[str], fill: CacheFill | None) -> list[bytes]:
        want = set(names)
        for n in names:
            want.update(name_variants(n))
        copier = _Copier()
        slot: dict[str, int] = {}
        members: list[Member] = []
        buf: bytearray | memoryview
        next_hdr = 0          # absolute offset of the next header group
        tail = bytearray()    # undecoded bytes from next_hdr on, when it lies in seen data
        start = 0             # absolute offset of the current chunk
        done = False
        for chunk in self._chunks():
            end = start + len(chunk)
            if not done and end > next_hdr:
                if tail:
                    tail += chunk
                    buf, base = tail, next_hdr
                else:
                    buf, base = memoryview(chunk)[next_hdr - start:], next_hdr
                found, rel, done = tarscan.scan(buf, base, partial=True, shard=self.name)
                for m in found:
                    if m.kind == FILE and m.name in want and m.name not in slot:
                        slot[m.name] = len(copier.targets)
                        copier.add(m.offset, m.size)
                members += found
                next_hdr = base + rel
                tail = bytearray(buf[rel:]) if rel < len(buf) else bytearray()
            if fill is not None and not fill.write(chunk):
                fill = None
            copier.feed(start, chunk)
            start = end
            if done and copier.done:
                break
        else:
            if not done:
                if tail:
                    # an incomplete header group: the non-partial scan says what is wrong
                    tarscan.scan(tail, next_hdr, shard=self.name)
                last = members[-1] if members else None
                if last is not None and last.offset + last.size > start:
                    raise CorruptArchive(self.name, f"truncated: {last.name!r} needs "
                                         f"{last.size} bytes at {last.offset}, "
                                         f"stream ends at {start}")
            if not copier.done:
                raise CorruptArchive(self.name, "truncated member data")
        if start == 0:
            raise CorruptArchive(self.name, "empty compressed stream")
        self._store_index(members, start)
        if fill is not None:
            self._entry = fill.commit()
            self._cache_tried = self._entry is not None
        out: list[bytes] = []
        for n in names:
            m = self.lookup(n)
            out.append(copier.result(slot[m.name]))
        return out

    # -- the inflate cache

    def _digest(self) -> bytes:
        return version_digest(self.format, self.identity)

    def _data_end(self) -> int:
        if self._end is None:
            idx = self._ensure_index()
            self._end = max(map(operator.add, idx.offsets, idx.sizes), default=0)
        return self._end

    def _scan_fill(self) -> CacheFill | None:
        """A CacheFill for the index scan about to run, unless there is no cache, it already
        holds this shard version (in a file that looks sound), or the shard cannot fit."""
        cache = self.cache
        if (cache is None or not cache.max_bytes or self._entry is not None
                or self.identity.size > cache.max_bytes):
            return None
        found = cache.open(self._digest(), 0, self.name)  # a broken one is discarded
        if found is not None:
            found.close()  # opened again, against the index, once that is known
            return None
        return cache.fill(self._digest(), self.name)

    def _cached(self) -> CacheEntry | None:
        """The cache entry members are served from, opened or (one pass) filled on first use;
        None without a cache, when this shard cannot be cached, or once the entry is stale."""
        if not self._cache_tried and self.cache is not None and self.cache.max_bytes:
            self._ensure_index()  # a scan pass fills the cache as it goes
            if not self._cache_tried:
                self._cache_tried = True
                self._entry = (self.cache.open(self._digest(), self._data_end(), self.name)
                               or self._fill_pass(self.cache))
        entry = self._entry
        return entry if entry is not None and not entry.bad else None

    def _fill_pass(self, cache: InflateCache) -> CacheEntry | None:
        """One pass writing the cache file (the index being known); its entry, or None when it
        does not fit in the cache or the request's budget, or cannot be written."""
        end = self._data_end()
        room = self.budget.remaining() if self.budget is not None else None
        if end > cache.max_bytes or (room is not None and end > room):
            return None
        fill = cache.fill(self._digest(), self.name)
        if fill is None:
            return None
        pos = 0
        try:
            for chunk in self._chunks():
                if not fill.write(chunk):
                    return None
                pos += len(chunk)
                if pos >= end:
                    return fill.commit()
        except ArchiveError:
            pass  # a broken stream gets no cache; reading the members reports what is wrong
        finally:
            fill.abort()  # nothing once committed
        return None


def _charged(chunks: Iterable[bytes], budget: InflateBudget | None, shard: object) -> Iterator[bytes]:
    """`chunks`, each charged to `budget` (if any) before it is handed on."""
    if budget is None:
        yield from chunks
        return
    for chunk in chunks:
        budget.charge(len(chunk), shard)
        yield chunk
