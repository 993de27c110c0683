"""The body of a GetBatch asked with `cksum`: every entry carries its XXH64.

The checksum must precede an entry's bytes (a PAX record before the TAR header, an extra
field in the ZIP local header), so each item is hashed before it is written: small items
are read once and written from memory, big ones read twice (hash, then send; the second
read comes from the page cache or decompresses again), an item another node sends is
received whole first (a batch's items are what a window holds; huge items are streamed by
peers only in batches without `cksum`). The output is iterated (no zero-copy: every byte
is hashed in this process anyway). archive/cksum.py describes the records.
"""
import xxhash

from ..archive.cksum import PAX_CKSUM_SIZE
from ..archive import open_writer
from ..archive.writers import _pread_pieces
from .assemble import _CHUNK, BatchOutput, _ListSink, _load, _windows

_HOLD = 4 << 20   # items up to this size are read once, into memory


class VerifiedOutput(BatchOutput):
    def __init__(self, plan, fmt, multipart, **kw):
        super().__init__(plan, fmt, multipart, **kw)
        if self.content_length is not None:
            self.content_length += PAX_CKSUM_SIZE * len(plan.items)

    @property
    def zero_copy(self):
        return False

    def _chunks(self):
        sink = _ListSink([])
        if self.prefix:
            yield self.prefix
        writer = open_writer(self.fmt, sink)
        for window in _windows(self.plan.items, self.window, self.stream_min):
            data = _load(window, self.stream_min)
            for it in window:
                self.done += 1
                for _ in _write(writer, it, data):
                    if sink.size >= _CHUNK:
                        yield from sink.take()
                if sink.size >= _CHUNK:
                    yield from sink.take()
            self.plan.release(window)
        writer.close(finish=self.end)
        yield from sink.take()
        if self.suffix:
            yield self.suffix


def _write(writer, it, data):
    """Write item `it` with its checksum, yielding now and then."""
    if it.src is not None:
        fd = it.src.fileno()
        if it.size <= _HOLD:
            blob = _pread(fd, it.offset, it.size, it.name)
            writer.add(it.name, blob, cksum=xxhash.xxh64_hexdigest(blob))
            return
        h = xxhash.xxh64()
        for piece in _pread_pieces(fd, it.offset, it.size, it.name):
            h.update(piece)
        yield from writer.add_stream_steps(it.name, it.size,
                                           _pread_pieces(fd, it.offset, it.size, it.name),
                                           cksum=h.hexdigest())
    elif it.remote is not None:
        got = _Received()
        for _ in it.remote.write_steps(it, got):
            pass
        writer.add(got.name, got.data, cksum=xxhash.xxh64_hexdigest(got.data))
    elif it.shard is None:
        writer.add(it.name, b"", cksum=xxhash.xxh64_hexdigest(b""))
    elif id(it) in data:
        blob = data[id(it)]
        writer.add(it.name, blob, cksum=xxhash.xxh64_hexdigest(blob))
    else:
        h = xxhash.xxh64()
        for chunk in it.shard.iter_member(it.member, it.offset, it.size):
            h.update(chunk)
        yield from writer.add_stream_steps(it.name, it.size,
                                           it.shard.iter_member(it.member, it.offset, it.size),
                                           cksum=h.hexdigest())


def _pread(fd, offset, length, name):
    return b"".join(_pread_pieces(fd, offset, length, name))


class _Received:
    """A writer stand-in that keeps the one entry a peer's frame gives (its name may be a
    placeholder's, when no node could deliver it)."""

    def __init__(self):
        self.name, self.data = None, b""

    def add(self, name, data, mtime=None, cksum=None):
        self.name, self.data = name, bytes(data)

    def add_stream_steps(self, name, size, chunks, mtime=None, cksum=None):
        self.name = name
        self.data = b"".join(bytes(c) for c in chunks)
        yield
