"""The body of a GetBatch asked with `cksum`: every entry carries its XXH64.

The checksum must precede an entry's bytes (a PAX record before the TAR header, an extra
field in the ZIP local header), so each item is hashed before it is written: small items
are read once and written from memory, big ones read twice (hash, then send; the second
read comes from the page cache or decompresses again), an item another node sends is
received whole first (a batch's items are what a window holds). In multipart mode the
metadata's `out` entries carry `xxhash64` too (the SDK's MossOut ignores fields it does not
know): every item is hashed before the status line, when this node reads them all from
open files; when some come from other nodes (a cluster) or are opened only when sent (a
batch past the fd budget), only the archive part's records carry them. The
output is iterated (no zero-copy: every byte is hashed in this process anyway).
archive/cksum.py describes the records.
"""
import xxhash

from ..archive.cksum import PAX_CKSUM_SIZE
from ..archive.writers import pread_pieces
from .assemble import BatchOutput, segment
from .seams import FILE, HELD, HOLE, STREAM

_HOLD = 4 << 20   # items up to this size are read once, into memory


class VerifiedOutput(BatchOutput):
    def __init__(self, plan, fmt, multipart, **kw):
        self._digests = None      # every item's, when known before the body
        self._next = 0            # index of the next item written
        if multipart and all(it.remote is None and not it.unopened
                             for it in plan.items):
            self._digests = [_digest(it) for it in plan.items]
        super().__init__(plan, fmt, multipart, **kw)
        if self.content_length is not None:
            self.content_length += PAX_CKSUM_SIZE * len(plan.items)

    @property
    def zero_copy(self):
        return False

    def _out(self):
        out = super()._out()
        if self._digests is not None:
            for o, d in zip(out, self._digests):
                o["xxhash64"] = d
        return out

    def _write_item(self, writer, it, data):
        known = self._digests[self._next] if self._digests is not None else None
        self._next += 1
        return _write(writer, it, data, known)


def _digest(it):
    """The XXH64 of a local item's bytes, read for that alone (never one another node sends:
    its bytes come once)."""
    h = xxhash.xxh64()
    kind, body = segment(it, {}, None)   # nothing held: a member is read again
    if kind == FILE:
        body = pread_pieces(body.fileno(), it.offset, it.size, it.name)
    elif kind != STREAM:
        body = ()   # a placeholder: no bytes
    for piece in body:
        h.update(piece)
    return h.hexdigest()


def _write(writer, it, data, known=None):
    """Write item `it` with its checksum (`known`, or computed now), yielding now and then."""
    kind, body = segment(it, data, None)
    if kind == FILE:
        fd = body.fileno()
        if it.size <= _HOLD:
            blob = b"".join(pread_pieces(fd, it.offset, it.size, it.name))
            writer.add(it.name, blob, cksum=known or xxhash.xxh64_hexdigest(blob))
            return
        yield from writer.add_stream_steps(it.name, it.size,
                                           pread_pieces(fd, it.offset, it.size, it.name),
                                           cksum=known or _digest(it))
    elif kind == STREAM and it.shard is not None and it.size > _HOLD:
        # a big member: hashed in a read of its own, then streamed
        yield from writer.add_stream_steps(it.name, it.size, body, cksum=known or _digest(it))
    else:
        # in memory: held, empty, a placeholder, or received whole (from another node)
        name, blob = it.name, b""
        if kind == HELD:
            blob = body
        elif kind == STREAM:
            blob = b"".join(bytes(chunk) for chunk in body)
        elif kind == HOLE:
            name = body[0]
        writer.add(name, blob, cksum=known or xxhash.xxh64_hexdigest(blob))
