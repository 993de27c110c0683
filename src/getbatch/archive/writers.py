"""Output archive writers: TAR, TGZ, TAR.LZ4 and ZIP, streamed to any object with .write().

Writers never seek: ZIP entries carry data descriptors (general-purpose bit 3) and
the central directory goes at the end. Small pieces are copied (or pread) into one
reused ~1 MiB staging buffer, so the sink sees few large writes and the process does
not allocate per item or per flush (fresh allocations cost page faults that made a
64 KiB file write several times slower in a large process). Pieces of 256 KiB or more
bypass the buffer. As with io.RawIOBase.write, the sink may only use the object it is
given during the call (a sink that queues data must copy it, e.g. bytes(b)); a sink
that keeps a view anyway gets a released view, and the writer takes a new buffer.
A writer left through an exception writes no archive end, so a failed batch never
looks like a complete archive.
"""
import os
import struct
import time
import zlib
from collections.abc import Iterable, Iterator
from typing import Protocol, Union

import lz4.frame

from .cksum import pax_cksum, zip_cksum_extra
from .errors import ArchiveError
from .tarblock import BLOCK, tar_pad
from .tarheader import tar_header
from .zipformat import (CENTRAL, DEFLATED, DESCRIPTOR, DESCRIPTOR64, END, END64, FLAG_DESCRIPTOR,
                        FLAG_UTF8, LOCAL, LOCATOR64, STORED, U16, U32, ZIP64_EXTRA)

OUTPUT_FORMATS = {"tar": "tar", "tgz": "tgz", "tar.gz": "tgz", "tar.lz4": "tar.lz4", "zip": "zip"}

_CAP = 1 << 20       # flush the buffer once it holds this much
_DIRECT = 256 << 10  # pieces this big skip the buffer
_PIECE = 1 << 20     # add_file reads at most this much per pread
_PADS = [bytes(n) for n in range(BLOCK)]
TAR_END = bytes(1024)  # two zero blocks close a TAR

# what members' data may be given as
Buffer = Union[bytes, bytearray, memoryview]


class Sink(Protocol):
    """Where a writer's output goes: a file, a socket's makefile, a BytesIO, ..."""

    def write(self, data: Buffer, /) -> object: ...


def pread_pieces(fd: int, offset: int, length: int, name: str) -> Iterator[bytes]:
    while length > 0:
        piece = os.pread(fd, min(length, _PIECE), offset)
        if not piece:
            raise ArchiveError(name, f"source file ended {length} bytes early")
        yield piece
        offset += len(piece)
        length -= len(piece)


def _as_bytes(data: Buffer) -> bytes | memoryview:
    """`data` itself when it is bytes, else a flat byte view of it (len = byte count)."""
    return data if type(data) is bytes else memoryview(data).cast("B")


class ArchiveWriter:
    """Base: buffering, lifecycle. Subclasses define the entry layout and the archive end."""

    format = ""

    def __init__(self, sink: Sink, mtime: int = 0, mode: int = 0o644) -> None:
        self._sink = sink
        self._mtime = mtime
        self._mode = mode
        self._buf = bytearray(_CAP)   # staging buffer; never resized while in use
        self._n = 0                   # bytes of it pending
        self._closed = False

    # -- output path: _put stages, _emit is what leaves the buffer (compressors hook here)
    def _emit(self, data: Buffer) -> None:
        self._sink.write(data)

    def _flush(self) -> None:
        if not self._n:
            return
        with memoryview(self._buf) as whole, whole[:self._n] as view:
            self._emit(view)
        self._n = 0
        try:  # a resize fails while anything still holds a view of the buffer
            self._buf.append(0)
            del self._buf[-1]
        except BufferError:
            self._buf = bytearray(_CAP)

    def _put(self, data: Buffer) -> None:
        n = len(data)
        if n >= _DIRECT:
            self._flush()
            self._emit(data)
            return
        if self._n + n > _CAP:
            self._flush()
        self._buf[self._n:self._n + n] = data
        self._n += n

    def _pread_into(self, fd: int, offset: int, length: int, name: str) -> None:
        """pread `length` bytes straight into the staging buffer (length < _DIRECT)."""
        if self._n + length > _CAP:
            self._flush()
        start = self._n
        while length:
            with memoryview(self._buf) as whole, whole[self._n:self._n + length] as view:
                got = os.preadv(fd, [view], offset)
            if got <= 0:
                self._n = start
                raise ArchiveError(name, f"source file ended {length} bytes early")
            self._n += got
            offset += got
            length -= got

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("archive writer is closed")

    # -- public API
    def add(self, name: str, data: Buffer, mtime: int | None = None, cksum: str | None = None) -> None:
        """One member holding `data` (bytes-like); `cksum`: its hex XXH64, written with it
        (archive/cksum.py)."""
        raise NotImplementedError

    def add_stream(self, name: str, size: int, chunks: Iterable[Buffer], mtime: int | None = None) -> None:
        """One member of `size` bytes given as an iterable of bytes-like chunks."""
        for _ in self.add_stream_steps(name, size, chunks, mtime):
            pass

    def add_stream_steps(self, name: str, size: int, chunks: Iterable[Buffer], mtime: int | None = None,
                         cksum: str | None = None) -> Iterator[None]:
        """add_stream as a generator that yields after each chunk is written, so that a caller
        streaming the output can drain its sink between chunks (and never hold the member)."""
        raise NotImplementedError

    def add_file(self, name: str, fd: int, offset: int, length: int, mtime: int | None = None) -> None:
        """One member holding `length` bytes of open file `fd` from `offset` (read with pread)."""
        self.add_stream(name, length, pread_pieces(fd, offset, length, name), mtime)

    def add_file_steps(self, name: str, fd: int, offset: int, length: int,
                       mtime: int | None = None) -> Iterator[None]:
        """add_file as a generator, as add_stream_steps is to add_stream."""
        return self.add_stream_steps(name, length, pread_pieces(fd, offset, length, name), mtime)

    def _finish(self) -> None:
        """Archive end (end blocks, central directory) into the buffer."""

    def _trailer(self) -> bytes:
        """Bytes the output stage still holds (compressor trailers), after the last flush."""
        return b""

    def close(self, finish: bool = True) -> None:
        """Write the archive end (unless `finish` is False: a TAR stream to continue elsewhere)
        and flush everything. The sink is left open."""
        if self._closed:
            return
        if finish:
            self._finish()
        self._flush()
        tail = self._trailer()
        if tail:
            self._sink.write(tail)
        self._closed = True

    def __enter__(self) -> "ArchiveWriter":
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self._closed = True


class TarWriter(ArchiveWriter):
    """Plain TAR: ustar headers (PAX when needed), data padded to 512, two zero blocks at the end."""

    format = "tar"

    def add(self, name: str, data: Buffer, mtime: int | None = None,
            cksum: str | None = None) -> None:
        self._check_open()
        data = _as_bytes(data)
        n = len(data)
        header = tar_header(name, n, self._mtime if mtime is None else mtime, self._mode)
        if cksum is not None:
            header = pax_cksum(cksum) + header
        pad = tar_pad(n)
        if n >= _DIRECT:
            self._put(header)
            self._put(data)
            self._put(_PADS[pad])
            return
        start = self._n
        end = start + len(header) + n + pad
        if end > _CAP:
            self._flush()
            start, end = 0, len(header) + n + pad
        buf = self._buf
        mid = start + len(header)
        buf[start:mid] = header
        buf[mid:mid + n] = data
        buf[mid + n:end] = _PADS[pad]
        self._n = end

    def add_stream_steps(self, name: str, size: int, chunks: Iterable[Buffer], mtime: int | None = None,
                         cksum: str | None = None) -> Iterator[None]:
        self._check_open()
        if cksum is not None:
            self._put(pax_cksum(cksum))
        self._put(tar_header(name, size, self._mtime if mtime is None else mtime, self._mode))
        total = 0
        for chunk in chunks:
            chunk = _as_bytes(chunk)
            total += len(chunk)
            if total > size:
                raise ArchiveError(name, f"stream gave more than the declared {size} bytes")
            self._put(chunk)
            yield
        if total != size:
            raise ArchiveError(name, f"stream gave {total} bytes, declared {size}")
        self._put(_PADS[tar_pad(size)])

    def add_file(self, name: str, fd: int, offset: int, length: int,
                 mtime: int | None = None) -> None:
        if length >= _DIRECT:
            return super().add_file(name, fd, offset, length, mtime)
        self._check_open()
        self._put(tar_header(name, length, self._mtime if mtime is None else mtime, self._mode))
        self._pread_into(fd, offset, length, name)
        self._put(_PADS[tar_pad(length)])

    def _finish(self) -> None:
        self._put(TAR_END)


class TgzWriter(TarWriter):
    """TAR through gzip (zlib level 1; header mtime 0, so output is deterministic)."""

    format = "tgz"

    def __init__(self, sink: Sink, mtime: int = 0, mode: int = 0o644) -> None:
        super().__init__(sink, mtime, mode)
        self._z = zlib.compressobj(1, zlib.DEFLATED, 31)

    def _emit(self, data: Buffer) -> None:
        out = self._z.compress(data)
        if out:
            self._sink.write(out)

    def _trailer(self) -> bytes:
        return self._z.flush()


class TarLz4Writer(TarWriter):
    """TAR through one LZ4 frame of 256 KiB blocks, no block checksums."""

    format = "tar.lz4"

    def __init__(self, sink: Sink, mtime: int = 0, mode: int = 0o644) -> None:
        super().__init__(sink, mtime, mode)
        self._c = lz4.frame.LZ4FrameCompressor(block_size=lz4.frame.BLOCKSIZE_MAX256KB,
                                               content_checksum=False)
        self._head: bytes = self._c.begin()

    def _emit(self, data: Buffer) -> None:
        out = self._c.compress(data)
        if self._head:
            out, self._head = self._head + out, b""
        if out:
            self._sink.write(out)

    def _trailer(self) -> bytes:
        return self._head + self._c.flush()


_ZIP64_LOCAL_EXTRA = struct.pack("<HHQQ", ZIP64_EXTRA, 16, 0, 0)
_DOS_MIN = 315532800  # 1980-01-01 00:00:00 UTC, the earliest DOS timestamp


def _dos_time(mtime: int) -> tuple[int, int]:
    """(time, date) DOS fields for a POSIX time, in UTC so output does not depend on the host."""
    t = time.gmtime(max(mtime, _DOS_MIN))
    year = min(t.tm_year, 2107)
    return ((t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2),
            ((year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday)


class ZipWriter(ArchiveWriter):
    """Streaming ZIP: local header, data, data descriptor per entry; central directory at the end.

    STORED by default (CRC computed while streaming), DEFLATED (zlib level 1) with
    compress=True. ZIP64 fields appear for entries whose sizes, or archives whose
    offsets or entry count, exceed the 32/16-bit fields.
    """

    format = "zip"

    def __init__(self, sink: Sink, mtime: int = 0, mode: int = 0o644,
                 compress: bool = False) -> None:
        super().__init__(sink, mtime, mode)
        self._method = DEFLATED if compress else STORED
        self._pos = 0          # bytes of archive produced so far (= next local header offset)
        # one tuple per entry for the central directory
        self._central: list[tuple[bytes, int, int, int, int, int, int, int, bool, bytes]] = []
        self._dos_cache: tuple[int | None, tuple[int, int]] = (None, (0, 0))
        self._attr = ((0o100000 | mode) & 0xFFFF) << 16

    def _put(self, data: Buffer) -> None:
        self._pos += len(data)
        super()._put(data)

    def _dos(self, mtime: int) -> tuple[int, int]:
        if mtime != self._dos_cache[0]:
            self._dos_cache = (mtime, _dos_time(mtime))
        return self._dos_cache[1]

    def _zip64_needed(self, size: int) -> bool:
        # deflate can grow incompressible data slightly; leave room for that
        bound = size + (size >> 10) + 64 if self._method else size
        return bound >= U32

    def _entry_steps(self, name: str, size: int, pieces: Iterable[Buffer], mtime: int | None,
                     cksum: str | None = None) -> Iterator[None]:
        """Write one entry, yielding after each piece of its data."""
        self._check_open()
        own = zip_cksum_extra(cksum) if cksum is not None else b""
        encoded = name.encode("utf-8")
        flags = FLAG_DESCRIPTOR if name.isascii() else FLAG_DESCRIPTOR | FLAG_UTF8
        zip64 = self._zip64_needed(size)
        dtime, ddate = self._dos(self._mtime if mtime is None else mtime)
        offset = self._pos
        if zip64:
            self._put(LOCAL.pack(45, flags, self._method, dtime, ddate, 0, U32, U32,
                                 len(encoded), len(_ZIP64_LOCAL_EXTRA) + len(own))
                      + encoded + _ZIP64_LOCAL_EXTRA + own)
        else:
            self._put(LOCAL.pack(20, flags, self._method, dtime, ddate, 0, 0, 0,
                                 len(encoded), len(own)) + encoded + own)
        crc = total = csize = 0
        comp = zlib.compressobj(1, zlib.DEFLATED, -15) if self._method else None
        for piece in pieces:
            piece = _as_bytes(piece)
            total += len(piece)
            if total > size:
                raise ArchiveError(name, f"stream gave more than the declared {size} bytes")
            crc = zlib.crc32(piece, crc)
            if comp is not None:
                piece = comp.compress(piece)
            csize += len(piece)
            if piece:
                self._put(piece)
            yield
        if total != size:
            raise ArchiveError(name, f"stream gave {total} bytes, declared {size}")
        if comp is not None:
            piece = comp.flush()
            csize += len(piece)
            self._put(piece)
        if zip64:
            self._put(DESCRIPTOR64.pack(crc, csize, size))
        else:
            self._put(DESCRIPTOR.pack(crc, csize, size))
        self._central.append((encoded, flags, dtime, ddate, crc, csize, size, offset, zip64,
                              own))

    def add(self, name: str, data: Buffer, mtime: int | None = None,
            cksum: str | None = None) -> None:
        data = _as_bytes(data)
        for _ in self._entry_steps(name, len(data), (data,), mtime, cksum):
            pass

    def add_stream_steps(self, name: str, size: int, chunks: Iterable[Buffer], mtime: int | None = None,
                         cksum: str | None = None) -> Iterator[None]:
        return self._entry_steps(name, size, chunks, mtime, cksum)

    def _finish(self) -> None:
        start = self._pos
        for encoded, flags, dtime, ddate, crc, csize, size, offset, zip64, own in self._central:
            wide: list[int] = []   # the fields too big for theirs, in the ZIP64 extra field
            if zip64:
                wide += [size, csize]
                size = csize = U32
            if offset >= U32:
                wide.append(offset)
                offset = U32
            extra = (struct.pack("<HH%dQ" % len(wide), ZIP64_EXTRA, 8 * len(wide), *wide)
                     if wide else b"")
            version = 45 if extra else 20
            extra += own
            self._put(CENTRAL.pack((3 << 8) | version, version, flags, self._method,
                                   dtime, ddate, crc, csize, size, len(encoded), len(extra), 0,
                                   0, 0, self._attr, offset) + encoded + extra)
        count, cd_size, end = len(self._central), self._pos - start, self._pos
        if count >= U16 or cd_size >= U32 or start >= U32:
            self._put(END64.pack(END64.size - 12, (3 << 8) | 45, 45, 0, 0, count, count,
                                 cd_size, start))
            self._put(LOCATOR64.pack(0, end, 1))
        self._put(END.pack(0, 0, min(count, U16), min(count, U16),
                           min(cd_size, U32), min(start, U32), 0))


def open_writer(fmt: str, sink: Sink, *, mtime: int = 0, mode: int = 0o644,
                compress_zip: bool = False) -> "ArchiveWriter":
    """An ArchiveWriter for output format `fmt` (a key of OUTPUT_FORMATS, leading '.' allowed)."""
    kind = OUTPUT_FORMATS.get(fmt[1:] if fmt.startswith(".") else fmt)
    if kind is None:
        raise ValueError(f"unknown output format {fmt!r}; expected one of {sorted(OUTPUT_FORMATS)}")
    if kind == "zip":
        return ZipWriter(sink, mtime, mode, compress_zip)
    return {"tar": TarWriter, "tgz": TgzWriter, "tar.lz4": TarLz4Writer}[kind](sink, mtime, mode)
