"""TAR shard readers: plain .tar served with pread, and .tgz / .tar.lz4 read in one streaming pass.

Plain TAR: the index (name -> data offset, size) comes from a header-only scan, so a member is
one pread and `extent()` lets the caller sendfile it. Compressed TAR: offsets live in the
decompressed stream, so `read_many` sorts the wanted members by offset, inflates the shard once
(stopping after the last one needed) and hands the bytes back in the caller's order; on a shard
never seen before the same single pass also builds the index. Plain zlib/lz4 streaming beat
libarchive for whole-shard reads here (bench/RESULTS-archive-read.md); gzip is inflated with
ISA-L when the optional `isal` package is installed.
"""
import os
import zlib

try:  # ISA-L inflates about twice as fast as zlib; optional
    from isal import isal_zlib as _inflate
except ImportError:
    _inflate = zlib

from . import index as _index
from . import tarscan
from .errors import CorruptArchive, MemberNotFound
from .formats import detect_format
from .member import FILE, Shard, name_variants

_IN_CHUNK = 256 << 10  # compressed bytes per read
# Inflated bytes per decompressor call: bounds memory on a decompression bomb, and keeps each
# chunk cache-sized for the copies out of it.
_OUT_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_LZ4_MAGIC = b"\x04\x22\x4d\x18"


class TarShard(Shard):
    """An uncompressed .tar shard; members are read with os.pread from one kept-open fd."""

    format = "tar"

    def __init__(self, path_or_fd, *, name=None, version="", index_dir=None):
        """`path_or_fd`: the shard's path, or an open read-only fd that the shard takes over
        (and closes, also when opening fails). `version`: see open_shard."""
        self._attach(path_or_fd, name, version)
        try:
            self.size = self.identity.size
            self._index = _index.get(self._fd, self.identity, self.format, self._scan,
                                     index_dir=index_dir)
        except BaseException:
            self.close()
            raise
        self._files = self._index.files

    def _scan(self):
        return tarscan.scan_fd(self._fd, self.size, shard=self.name)

    def members(self):
        return list(self._index.members())

    def lookup(self, name):
        m = self._index.find(name)
        if m is None:
            raise MemberNotFound(self.name, name)
        return m

    def extent(self, name):
        ext = self._files.get(name)
        if ext is None:
            m = self.lookup(name)
            ext = (m.offset, m.size)
        return ext

    def read(self, name):
        ext = self._files.get(name) or self.extent(name)
        data = os.pread(self._fd, ext[1], ext[0])
        if len(data) != ext[1]:
            self._short(ext)
        return data

    def read_many(self, names):
        files = self._files
        pread = os.pread
        fd = self._fd
        out = []
        for name in names:
            ext = files.get(name) or self.extent(name)
            data = pread(fd, ext[1], ext[0])
            if len(data) != ext[1]:
                self._short(ext)
            out.append(data)
        return out

    def _short(self, ext):
        raise CorruptArchive(self.name, f"truncated: member data at {ext[0]}+{ext[1]} is past the "
                                        "end of the file (shard changed after indexing?)")


def _decompressor(fmt):
    if fmt == "tgz":
        return _inflate.decompressobj(31)
    import lz4.frame  # only .tar.lz4 shards need it
    return lz4.frame.LZ4FrameDecompressor()


def _stream(fd, fmt, shard):
    """Decompressed chunks of the shard open on `fd`, from offset 0 of the stream.

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
                more = os.pread(fd, _IN_CHUNK, pos)
                pos += len(more)
                data += more
            if not data.startswith(magic):
                if members:
                    return
                raise CorruptArchive(shard, f"not a {fmt} stream (starts with {data[:4]!r})")
            dec = _decompressor(fmt)
            members += 1
        if not data:
            data = os.pread(fd, _IN_CHUNK, pos)
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
                    more = dec.unconsumed_tail or len(out) == _OUT_CHUNK
                else:
                    more = not dec.needs_input
                if not more:
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

    def __init__(self):
        self.targets = []   # [(offset, size)]
        self.bufs = []      # bytes when complete, else [bytearray, filled]
        self.first = 0      # index of the first incomplete target

    def add(self, offset, size):
        self.targets.append((offset, size))
        self.bufs.append(b"" if size == 0 else None)

    @property
    def done(self):
        return self.first == len(self.targets)

    def feed(self, start, chunk):
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

    def result(self, i):
        return self.bufs[i]


class CompressedTarShard(Shard):
    """A .tgz/.tar.gz or .tar.lz4 shard. Offsets in members() are in the decompressed stream.

    `passes` counts decompression passes over this shard (one per read_many call at most, and
    one per index build when members()/lookup() come first on a shard not indexed yet).
    """

    def __init__(self, path_or_fd, *, name=None, version="", index_dir=None, format=None):
        """`path_or_fd`, `name`, `version`: as TarShard's; `format` is 'tgz' or 'tar.lz4'
        (detected when None)."""
        self._attach(path_or_fd, name, version)
        self._index_dir = index_dir
        self.passes = 0
        try:
            self.format = format or detect_format(os.pread(self._fd, 512, 0), self.name)
            if self.format not in ("tgz", "tar.lz4"):
                raise ValueError(f"{self.name}: not a compressed tar ({self.format})")
            self._index = _index.cached(self._fd, self.identity, self.format,
                                        index_dir=index_dir)
        except BaseException:
            self.close()
            raise

    def _store_index(self, members, data_len):
        """Keep the index a scan pass built; `data_len`: decompressed bytes it covered."""
        self._index = _index.store(self._fd, self.identity, self.format, members, data_len,
                                   index_dir=self._index_dir)

    def _ensure_index(self):
        if self._index is None:
            self._scan_pass(())
        return self._index

    def members(self):
        return list(self._ensure_index().members())

    def lookup(self, name):
        m = self._ensure_index().find(name)
        if m is None:
            raise MemberNotFound(self.name, name)
        return m

    def extent(self, name):
        self.lookup(name)
        return None

    def read_many(self, names):
        names = list(names)
        if self._index is None:
            return self._scan_pass(names)
        wanted = [self.lookup(n) for n in names]
        order = sorted({m.offset: m for m in wanted}.values(), key=lambda m: m.offset)
        copier = _Copier()
        slot = {}
        for m in order:
            slot[m.offset] = len(copier.targets)
            copier.add(m.offset, m.size)
        if not copier.done:
            self._copy_pass(copier)
        return [copier.result(slot[m.offset]) for m in wanted]

    def _chunks(self):
        self.passes += 1
        return _stream(self._fd, self.format, self.name)

    def _copy_pass(self, copier):
        start = 0
        for chunk in self._chunks():
            copier.feed(start, chunk)
            start += len(chunk)
            if copier.done:
                return
        raise CorruptArchive(self.name, f"truncated: decompressed stream ends at {start}, "
                                        "before a member's data")

    def _scan_pass(self, names):
        """One pass that scans every header (building the index) and captures the data of the
        first regular member of each name that `names` (or their variants) may resolve to."""
        want = set(names)
        for n in names:
            want.update(name_variants(n))
        copier = _Copier()
        slot = {}
        members = []
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
        out = []
        for n in names:
            m = self.lookup(n)
            out.append(copier.result(slot[m.name]))
        return out
