"""ZipShard: members of a .zip shard by name, read with pread (stored) or inflated (deflated).

The central directory is parsed at most once per shard version while it stays in the LRU of
parsed shards of the shard's ShardMemory (memory.py, bounded by bytes), keyed by the
shardfile.Identity of the fd being read, so a replaced or rewritten file is parsed again.
A member's data offset needs its local header
(whose name/extra lengths may differ from the central directory's); it is read on first use
and remembered alongside the cached directory.

CRC-32: `read` checks every member it returns. A stored member served zero-copy through
`extent()` (pread/sendfile of the shard's own bytes by the caller) is CRC-checked by
`extent()` itself the first time it is asked for while this shard version's directory is kept:
a corrupt member raises CorruptArchive before any of its bytes can be sent. The check is
remembered with the cached directory, so later extents cost nothing.
"""
import os
import types
import zlib
from collections.abc import Hashable, Iterable, Iterator
from typing import Any

from . import zipcd
from .errors import CorruptArchive, MemberNotFound
from .inflate import charge
from .member import CHUNK, FILE, Member, Shard, find_variant, member_range
from .memory import ShardMemory, estimate, or_default
from .shardfile import Identity
from .zipformat import DEFLATED, FLAG_ENCRYPTED, LOCAL, STORED

_zlib: types.ModuleType
try:  # ISA-L (python-isal, optional) inflates ~1.8x and checksums ~10x faster than zlib
    from isal import isal_zlib as _zlib
except ImportError:
    _zlib = zlib

_MAX_RATIO = 1032      # deflate cannot expand data by more than this
_CRC_PIECE = 1 << 20   # bytes per pread while checking a stored member


class ZipDirectory:
    """One parsed central directory, shared by every ZipShard of the same shard version."""

    __slots__ = ("members", "index", "data_offsets", "crc_checked", "weight")

    def __init__(self, members: list[Member]) -> None:
        self.members = members
        # data_offsets and crc_checked grow as members are read: within the per-member estimate
        self.weight = estimate([m.name for m in members])
        index: dict[str, Member] = {}
        for m in members:
            if m.kind == FILE and m.name not in index:   # first of duplicates wins
                index[m.name] = m
        self.index = index
        self.data_offsets: dict[int, int] = {}  # local header offset -> data offset
        self.crc_checked: set[int] = set()  # local header offsets of stored members found intact


_CLOSED = ZipDirectory([])   # a closed shard's: it holds nothing


def directory_key(identity: Identity) -> Hashable:
    """The key of a shard version's directory in the cache it shares with TAR indexes."""
    return ("zip-directory", identity)


class ZipShard(Shard):
    """An opened .zip shard (STORED and DEFLATED members; CRC-32 checked before use)."""

    format = "zip"
    _dir: ZipDirectory
    _index: dict[str, Member]     # its regular files by name
    _offsets: dict[int, int]      # its data_offsets

    def __init__(self, path_or_fd: int | str | os.PathLike[str], *, name: str | None = None,
                 version: str = "", index_dir: str | None = None, length: int | None = None,
                 memory: ShardMemory | None = None) -> None:
        """Arguments as TarShard's. `index_dir` is accepted and unused: the central directory
        is the index."""
        self.memory = or_default(memory)
        self._attach(path_or_fd, name, version, length)
        self._load_directory()

    def _load_directory(self) -> None:
        """Find the parsed central directory in memory or read it (`_read_directory`); on
        failure the shard is closed."""
        self._size = self.identity.size
        try:
            self._dir = self.memory.parsed.get(directory_key(self.identity))
            if self._dir is None:
                self._dir = ZipDirectory(self._read_directory())
                self.memory.parsed.put(directory_key(self.identity), self._dir)
        except BaseException:
            self.close()
            raise
        self._index = self._dir.index
        self._offsets = self._dir.data_offsets

    def _read_directory(self) -> list[Member]:
        """The central directory's members, read from the shard file."""
        return zipcd.read_central_directory(self._fd, self._size, self.name)

    def members(self) -> list[Member]:
        return list(self._dir.members)

    def _let_go(self) -> None:
        self._dir, self._index, self._offsets = _CLOSED, {}, {}

    def lookup(self, name: str) -> Member:
        found = find_variant(self._index, name)
        if found is None:
            raise MemberNotFound(self.name, name)
        return found[1]

    def _data_offset(self, m: Member) -> int:
        off = self._offsets.get(m.offset)
        if off is None:
            head = self._local_header(m.offset) if m.offset >= 0 else b""
            if len(head) != LOCAL.size or head[:4] != LOCAL.signature:
                raise CorruptArchive(self.name, f"bad local header for {m.name}")
            fields = LOCAL.struct.unpack(head)
            if fields[2] & FLAG_ENCRYPTED:
                raise CorruptArchive(self.name, f"{m.name} is encrypted")
            off = m.offset + LOCAL.size + fields[-2] + fields[-1]
            self._offsets[m.offset] = off
        # checked per member, not per local header: directory entries may share one
        if off + m.csize > self._size or m.csize < 0:
            raise CorruptArchive(self.name, f"data of {m.name} runs past the end of the file")
        return off

    def _local_header(self, offset: int) -> bytes:
        """The bytes of the local header at `offset` (fewer at the end of the file)."""
        return os.pread(self._fd, LOCAL.size, offset)

    def _stored_extent(self, m: Member) -> tuple[int, int]:
        if m.csize != m.size:
            raise CorruptArchive(self.name, f"stored member {m.name} has csize != size")
        return self._data_offset(m), m.size

    def extent(self, name: str) -> tuple[int, int] | None:
        m = self.lookup(name)
        if m.method != STORED:
            return None
        ext = self._stored_extent(m)
        if m.offset not in self._dir.crc_checked:
            self._check_stored(m, *ext)
            self._dir.crc_checked.add(m.offset)
        return ext

    def _check_stored(self, m: Member, offset: int, size: int) -> None:
        """CRC-32 of a stored member's bytes in the shard, read piece by piece."""
        crc = 0
        end = offset + size
        while offset < end:
            piece = os.pread(self._fd, min(_CRC_PIECE, end - offset), offset)
            if not piece:
                raise CorruptArchive(self.name, f"{m.name}: data ends {end - offset} bytes "
                                                "early")
            crc = _zlib.crc32(piece, crc)
            offset += len(piece)
        if crc != m.crc:
            raise CorruptArchive(self.name, f"CRC-32 mismatch in {m.name}")

    def _read(self, m: Member) -> bytes:
        if m.method == STORED:
            offset, size = self._stored_extent(m)
            data = os.pread(self._fd, size, offset)
        elif m.method == DEFLATED:
            if m.size > m.csize * _MAX_RATIO + 64:
                raise CorruptArchive(self.name, f"impossible sizes for deflated {m.name}")
            charge(self.budget, m.size, self.name)
            raw = os.pread(self._fd, m.csize, self._data_offset(m))
            inflater = _zlib.decompressobj(-15)
            try:
                # max_length caps the output when the directory understates the size
                data = inflater.decompress(raw, m.size or 1)
            except _zlib.error as exc:
                raise CorruptArchive(self.name, f"bad deflate data in {m.name}: {exc}") from None
            if not inflater.eof:
                raise CorruptArchive(self.name, f"deflate data of {m.name} is incomplete")
        else:
            raise CorruptArchive(self.name, f"unsupported compression method {m.method}")
        if len(data) != m.size:
            raise CorruptArchive(self.name, f"{m.name}: got {len(data)} bytes, expected {m.size}")
        if _zlib.crc32(data) != m.crc:
            raise CorruptArchive(self.name, f"CRC-32 mismatch in {m.name}")
        return data

    def read(self, name: str) -> bytes:
        return self._read(self.lookup(name))

    def read_many(self, names: Iterable[str]) -> list[bytes]:
        wanted = [self.lookup(n) for n in names]
        out: list[Any] = [None] * len(wanted)   # every slot is filled below
        # file order keeps the disk reading forward; results go back to the caller's order
        for i in sorted(range(len(wanted)), key=lambda i: wanted[i].offset):
            out[i] = self._read(wanted[i])
        return out

    def inflate_cost(self, reads: Iterable[tuple[str, int, int | None]]) -> int:
        # a deflated member is inflated whole, whatever part of it is read (its CRC-32)
        wanted = {m.offset: m for m in (self.lookup(r[0]) for r in reads)}
        return sum(m.size for m in wanted.values() if m.method == DEFLATED)

    def iter_member(self, name: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        m = self.lookup(name)
        start, n = member_range(m, offset, length)
        if m.method == STORED:
            data_offset, _ = self._stored_extent(m)
            chunks = self.file_chunks(data_offset + start, n)
            return _last_held(self._checked(m, chunks)) if n == m.size else chunks
        if m.method == DEFLATED:
            if m.size > m.csize * _MAX_RATIO + 64:
                raise CorruptArchive(self.name, f"impossible sizes for deflated {m.name}")
            return _last_held(_part(self._checked(m, self._inflate(m)), start, n))
        raise CorruptArchive(self.name, f"unsupported compression method {m.method}")

    def _inflate(self, m: Member) -> Iterator[bytes]:
        """The deflated member's bytes, chunk by chunk, each charged to the budget."""
        pos, left = self._data_offset(m), m.csize
        inflater = _zlib.decompressobj(-15)
        total = 0
        data = b""
        full = False  # the last call filled its output: more may be pending without input
        try:
            while not inflater.eof:
                if not data and not full:
                    if not left:
                        raise CorruptArchive(self.name, f"deflate data of {m.name} is incomplete")
                    data = os.pread(self._fd, min(left, CHUNK // 4), pos)
                    if not data:
                        raise CorruptArchive(self.name, f"data of {m.name} runs past the end "
                                                        "of the file")
                    pos += len(data)
                    left -= len(data)
                out = inflater.decompress(data, CHUNK)
                data = inflater.unconsumed_tail
                full = len(out) == CHUNK
                if out:
                    total += len(out)
                    if total > m.size:  # the directory understates it: never inflate past it
                        raise CorruptArchive(self.name, f"{m.name}: more than the {m.size} bytes "
                                                        "the directory says")
                    charge(self.budget, len(out), self.name)
                    yield out
        except _zlib.error as exc:
            raise CorruptArchive(self.name, f"bad deflate data in {m.name}: {exc}") from None

    def _checked(self, m: Member, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """`chunks` of the whole member, then its size and CRC-32 checked: a mismatch raises
        CorruptArchive (see _last_held for why the caller still sees an incomplete member)."""
        crc = total = 0
        for chunk in chunks:
            crc = _zlib.crc32(chunk, crc)
            total += len(chunk)
            yield chunk
        if total != m.size:
            raise CorruptArchive(self.name, f"{m.name}: got {total} bytes, expected {m.size}")
        if crc != m.crc:
            raise CorruptArchive(self.name, f"CRC-32 mismatch in {m.name}")


def _last_held(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """`chunks`, the last one handed on only once `chunks` is exhausted, so a check that fails
    at its end raises before the final bytes leave: whoever sends the member (with its size
    announced) sends fewer bytes, and the failure is detectable."""
    pending = None
    for chunk in chunks:
        if pending is not None:
            yield pending
        pending = chunk
    if pending is not None:
        yield pending


def _part(chunks: Iterable[bytes], start: int, n: int) -> Iterator[bytes]:
    """Bytes [start, start+n) of the stream `chunks`, which is still read to its end (its
    checks come last)."""
    pos, end = 0, start + n
    for chunk in chunks:
        lo, hi = max(start - pos, 0), min(end - pos, len(chunk))
        if lo < hi:
            yield chunk if lo == 0 and hi == len(chunk) else chunk[lo:hi]
        pos += len(chunk)
