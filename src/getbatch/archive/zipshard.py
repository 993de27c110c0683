"""ZipShard: members of a .zip shard by name, read with pread (stored) or inflated (deflated).

The central directory is parsed at most once per shard file per process: parsed
directories live in a small LRU keyed by (realpath, size, mtime_ns), so a rewritten
file is parsed again. A member's data offset needs its local header (whose name/extra
lengths may differ from the central directory's); it is read on first use and
remembered alongside the cached directory.
"""
import os
import struct
import threading
import zlib
from collections import OrderedDict

from ._accel import load
from .errors import CorruptArchive, MemberNotFound
from .inflate import charge
from .member import CHUNK, FILE, Shard, member_range, name_variants

try:  # ISA-L (python-isal, optional) inflates ~1.8x and checksums ~10x faster than zlib
    from isal import isal_zlib as _zlib
except ImportError:
    _zlib = zlib

_zipcd = load("_czipcd", "zipcd_py")

_CACHE_SIZE = 128
_cache = OrderedDict()
_cache_lock = threading.Lock()
_LOCAL = struct.Struct("<IHHHHHIIIHH")
_MAX_RATIO = 1032  # deflate cannot expand data by more than this


class _Directory:
    """One parsed central directory, shared by every ZipShard of the same file."""

    __slots__ = ("members", "index", "data_offsets")

    def __init__(self, members):
        self.members = members
        index = {}
        for m in members:
            if m.kind == FILE and m.name not in index:   # first of duplicates wins
                index[m.name] = m
        self.index = index
        self.data_offsets = {}  # local header offset -> data offset


def _directory(path, fd, label):
    st = os.fstat(fd)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    with _cache_lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
            return found, st.st_size
    found = _Directory(_zipcd.read_central_directory(fd, st.st_size, label))
    with _cache_lock:
        _cache[key] = found
        if len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return found, st.st_size


class ZipShard(Shard):
    """An opened .zip shard (STORED and DEFLATED members; CRC-32 checked on every read)."""

    format = "zip"

    def __init__(self, path, *, index_dir=None, name=None):
        # index_dir: accepted like the TAR shards', unused: the central directory is the index
        self.path = os.fspath(path)
        self.name = name if name is not None else self.path   # names the shard in errors
        self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self._dir, self._size = _directory(self.path, self._fd, self.name)
        except BaseException:
            os.close(self._fd)
            raise
        self._index = self._dir.index
        self._offsets = self._dir.data_offsets

    def members(self):
        return list(self._dir.members)

    def lookup(self, name):
        m = self._index.get(name)
        if m is None:
            for alt in name_variants(name):
                m = self._index.get(alt)
                if m is not None:
                    break
            else:
                raise MemberNotFound(self.name, name)
        return m

    def _data_offset(self, m):
        off = self._offsets.get(m.offset)
        if off is not None:
            return off
        head = os.pread(self._fd, 30, m.offset) if m.offset >= 0 else b""
        if len(head) != 30 or head[:4] != b"PK\x03\x04":
            raise CorruptArchive(self.name, f"bad local header for {m.name}")
        _, _, flags, _, _, _, _, _, _, nlen, elen = _LOCAL.unpack(head)
        if flags & 1:
            raise CorruptArchive(self.name, f"{m.name} is encrypted")
        off = m.offset + 30 + nlen + elen
        if off + m.csize > self._size or m.csize < 0:
            raise CorruptArchive(self.name, f"data of {m.name} runs past the end of the file")
        self._offsets[m.offset] = off
        return off

    def extent(self, name):
        m = self.lookup(name)
        if m.method != 0:
            return None
        if m.csize != m.size:
            raise CorruptArchive(self.name, f"stored member {m.name} has csize != size")
        return self._data_offset(m), m.size

    def _read(self, m):
        if m.method == 0:
            if m.csize != m.size:
                raise CorruptArchive(self.name, f"stored member {m.name} has csize != size")
            data = os.pread(self._fd, m.size, self._data_offset(m))
        elif m.method == 8:
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

    def read(self, name):
        return self._read(self.lookup(name))

    def read_many(self, names):
        wanted = [self.lookup(n) for n in names]
        out = [None] * len(wanted)
        # file order keeps the disk reading forward; results go back to the caller's order
        for i in sorted(range(len(wanted)), key=lambda i: wanted[i].offset):
            out[i] = self._read(wanted[i])
        return out

    def inflate_cost(self, reads):
        # a deflated member is inflated whole, whatever part of it is read (its CRC-32)
        wanted = {m.offset: m for m in (self.lookup(r[0]) for r in reads)}
        return sum(m.size for m in wanted.values() if m.method == 8)

    def iter_member(self, name, offset=0, length=None):
        m = self.lookup(name)
        start, n = member_range(m, offset, length)
        if m.method == 0:
            if m.csize != m.size:
                raise CorruptArchive(self.name, f"stored member {m.name} has csize != size")
            chunks = self._pread_chunks(self._fd, self._data_offset(m) + start, n)
            return self._checked(m, chunks) if n == m.size else chunks
        if m.method == 8:
            if m.size > m.csize * _MAX_RATIO + 64:
                raise CorruptArchive(self.name, f"impossible sizes for deflated {m.name}")
            return _part(self._checked(m, self._inflate(m)), start, n)
        raise CorruptArchive(self.name, f"unsupported compression method {m.method}")

    def _inflate(self, m):
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

    def _checked(self, m, chunks):
        """`chunks` of the whole member, then its size and CRC-32 checked (after the last one
        went out: a mismatch raises CorruptArchive, which makes the output incomplete)."""
        crc = total = 0
        for chunk in chunks:
            crc = _zlib.crc32(chunk, crc)
            total += len(chunk)
            yield chunk
        if total != m.size:
            raise CorruptArchive(self.name, f"{m.name}: got {total} bytes, expected {m.size}")
        if crc != m.crc:
            raise CorruptArchive(self.name, f"CRC-32 mismatch in {m.name}")


def _part(chunks, start, n):
    """Bytes [start, start+n) of the stream `chunks`, which is still read to its end (its
    checks come last)."""
    pos, end = 0, start + n
    for chunk in chunks:
        lo, hi = max(start - pos, 0), min(end - pos, len(chunk))
        if lo < hi:
            yield chunk if lo == 0 and hi == len(chunk) else chunk[lo:hi]
        pos += len(chunk)
