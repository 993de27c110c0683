"""Turn a Plan into the response body: the archive, alone (streaming) or in multipart (buffered).

Two ways out, byte-identical:
- `emit_to(fd)`: for .tar output, headers are packed up front and the items go through the
  Cython emit loop straight to the client socket (gathered with pread into one buffer,
  or sent with sendfile from the size the caller gives). server/worker.py calls it.
- iteration: a plain WSGI byte iterator through the streaming archive writers, for any
  WSGI server and for the compressed output formats.

Members that need decompression are either held or streamed. Members of up to a quarter of
the window are read in windows that hold at most `window` bytes of them (default 32 MiB), each
shard decompressed once per window; bigger members are streamed chunk by chunk from the shard
into the output when their turn comes (`Shard.iter_member`), so memory stays bounded whatever
the batch and member sizes. So do big plain files on the iterated path.
Buffered mode needs no spill file: every size and every err_msg is known after planning,
so the metadata part is written first and the archive part streams after it.
"""
import secrets

import msgspec

from ..archive import ArchiveError, emit, open_writer, tar_entry_size, tar_header, tar_pad
from ..archive.writers import TAR_END
from .errors import HoleError
from .items import Item
from .plan import Plan
from .seams import EMPTY, FILE, HELD, STREAM, Flush, Segment
from .warmup import STEP_BYTES, STEP_ITEMS, Lookahead, WarmPool

WINDOW_BYTES = 32 << 20
WINDOW_ITEMS = 4096
WINDOW_LAZY = 256  # sources opened only when sent (past the fd budget) per window
SLICE_BYTES = 2 << 20  # the emit loop is called at least this often (bytes), to show progress
_CHUNK = 1 << 20   # the iterator yields about this much at a time; files above it are streamed
CONTENT_TYPES = {"tar": "application/x-tar", "tgz": "application/gzip",
                 "tar.lz4": "application/x-lz4", "zip": "application/zip"}
_enc = msgspec.json.Encoder()


def _held_size(it, stream_min):
    """Bytes holding item `it`'s data costs a window: its whole member when that is read
    whole, 0 when there is nothing to decompress or the member is streamed."""
    if it.shard is None:
        return 0
    size = it.shard.lookup(it.member).size
    return size if size <= stream_min else 0


def _windows(items, window, stream_min):
    """Consecutive runs of items whose held members fit in `window` bytes together, and
    whose lazily opened sources stay few (they are all open while their window is sent).
    Lists built as `items` is iterated: a plan's Items exist one window at a time."""
    run, held, lazy = [], 0, 0
    for it in items:
        cost = lz = 0
        if it.shard is not None:
            cost = _held_size(it, stream_min)
        elif it.unopened:
            lz = 1
        if run and (held + cost > window or len(run) >= WINDOW_ITEMS
                    or lazy + lz > WINDOW_LAZY):
            yield run
            run, held, lazy = [], 0, 0
        run.append(it)
        held += cost
        lazy += lz
    if run:
        yield run


def _last_flagged(windows):
    """(window, is it the last) pairs, one window ahead."""
    it = iter(windows)
    prev = next(it, None)
    for w in it:
        yield prev, False
        prev = w
    if prev is not None:
        yield prev, True


def _load(window, stream_min):
    """Bytes of every held member of the window: one read_many per shard. Streamed members
    are not in the result."""
    by_shard = {}
    for it in window:
        if _held_size(it, stream_min):
            by_shard.setdefault(id(it.shard), (it.shard, []))[1].append(it)
    data = {}
    for shard, its in by_shard.values():
        blobs = shard.read_many([it.member for it in its])
        for it, blob in zip(its, blobs):
            data[id(it)] = memoryview(blob)[it.offset:it.offset + it.size]
    return data


def segment(it: Item, data: dict[int, memoryview], flush: Flush | None) -> Segment:
    """Item `it`'s bytes as (kind, payload) (kinds: seams.py), whichever sink writes them:
    the one place that tells item kinds apart. `data`: the window's held members (`_load`);
    `flush`: sends what the emit loop queued (None when iterating)."""
    if it.src is not None:
        return FILE, it.src
    if it.remote is not None:
        return it.remote.segment(it, flush)
    if it.shard is None:
        return EMPTY, None
    held = data.get(id(it))
    if held is not None:
        return HELD, held
    return STREAM, it.shard.iter_member(it.member, it.offset, it.size)


class BatchOutput:
    """The response body of one GetBatch: iterable of bytes, or emitted by `emit_to(fd)`."""

    def __init__(self, plan: Plan, fmt: str, multipart: bool, window: int = WINDOW_BYTES,
                 end: bool = True, prefix: bytes = b"", warmup: int = 0,
                 warm_pool: WarmPool | None = None) -> None:
        """`end=False`: no archive end (a peer's framed answer, after `prefix`); `warmup`:
        look-ahead threads on `warm_pool`, the app's WarmPool (warmup.py; 0 or less, or no
        pool: none)."""
        self.plan = plan
        self.warmup = warmup if warm_pool is not None else 0
        self.warm_pool = warm_pool
        self.end = end
        self.fmt = fmt
        self.window = window
        self.stream_min = window // 4   # members bigger than this are streamed, never held
        self.boundary = secrets.token_hex(30) if multipart else None
        self.prefix, self.suffix = self._framing()
        self.prefix += prefix
        self.content_length = None
        if fmt == "tar":
            # sized without packing: headers are packed per window as they are sent, so a
            # huge batch does not hold 512 bytes per item
            self.content_length = (len(self.prefix) + len(TAR_END) * end + len(self.suffix)
                                   + sum(tar_entry_size(n, s) for n, s in plan.items.names_sizes()))
        self.content_type = (f"multipart/mixed; boundary={self.boundary}" if multipart
                             else CONTENT_TYPES[fmt])
        self.sent = 0            # body bytes handed to the client so far
        self.done = 0            # items handed to the client so far (updated per slice)
        self.completed = False   # the whole body went out
        self.error = None        # the exception that cut the body short, if any
        self.on_close = None     # called with this object once, when the body is closed

    def _framing(self):
        if self.boundary is None:
            return b"", b""
        b = self.boundary
        meta = _enc.encode({"uuid": self.plan.uuid, "out": self._out()})
        prefix = (f"--{b}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n".encode()
                  + meta + b"\n\r\n"
                  + f"--{b}\r\nContent-Disposition: form-data; name=\"archive\"; "
                    f"filename=\"get-batch[{self.plan.uuid}]\"\r\n"
                    f"Content-Type: application/octet-stream\r\n\r\n".encode())
        return prefix, f"\r\n--{b}--\r\n".encode()

    def _out(self):
        """The multipart metadata's `out` list."""
        return self.plan.out()

    @property
    def zero_copy(self):
        """True when emit_to() can send this body (plain TAR, every size known)."""
        return self.content_length is not None

    def emit_to(self, fd, sendfile_min=1 << 16, timeout_ms=120_000):
        """Send the whole body to `fd` through the emit loop; returns bytes written."""
        try:
            return self._emit_to(fd, sendfile_min, timeout_ms)
        except BaseException as exc:
            self.error = exc
            raise

    def _emit_to(self, fd, sendfile_min, timeout_ms):
        def send(items):
            self.sent += emit(fd, items, sendfile_min=sendfile_min, timeout_ms=timeout_ms)
            items.clear()

        def flush():
            # an item from another node: what is queued may point into its stream's window
            if items:
                send(items)

        windows = _last_flagged(_windows(self.plan.items, self.window, self.stream_min))
        ahead = (Lookahead(self.plan.items, self.warmup, self.warm_pool) if self.warmup > 0
                 else None)
        if ahead is not None:
            ahead.advance(0)
        step = 0    # with warm-up: bytes queued since the last send
        # the multipart prefix and the archive end travel in the first and last emit calls,
        # so a one-item batch costs one write
        items = [(self.prefix, None, 0, 0, 0)] if self.prefix else []
        add = items.append
        n = pending = 0   # items added; their bytes not yet sent
        for window, last in windows:
            data = _load(window, self.stream_min)
            for it in window:
                if pending >= SLICE_BYTES:
                    # a window goes out in slices, so `done` moves while a slow client reads
                    send(items)
                    self.done, pending = n, 0
                n += 1
                pending += it.size
                head = tar_header(it.name, it.size)
                kind, body = segment(it, data, flush)
                if kind == FILE:
                    add((head, body, it.offset, it.size, tar_pad(it.size)))
                    if ahead is not None:
                        # sent in steps, so that the look-ahead knows where the sending is
                        step += it.size
                        if step >= STEP_BYTES or len(items) >= STEP_ITEMS:
                            ahead.advance(n)
                            send(items)
                            self.done, pending, step = n, 0, 0
                elif kind == HELD:
                    add((head, body, 0, it.size, tar_pad(it.size)))
                elif kind == EMPTY:
                    add((head, None, 0, 0, 0))
                elif kind == STREAM:
                    # what is pending leaves with the header and the first chunk, then one
                    # emit per chunk; the padding goes with what follows
                    sent = 0
                    for chunk in body:
                        sent += len(chunk)
                        if sent > it.size:
                            break
                        add((head, chunk, 0, len(chunk), 0))
                        head = b""
                        send(items)
                    if sent != it.size:
                        raise ArchiveError(it.name, f"member gave {sent} bytes, {it.size} planned")
                    add((head, None, 0, 0, tar_pad(it.size)))
                else:   # HOLE
                    add((_hole_frame(it, body), None, 0, 0, 0))
            if last:
                add((TAR_END * self.end + self.suffix, None, 0, 0, 0))
            send(items)
            self.done, pending = n, 0
            self.plan.release(window)
        self.completed = True
        return self.sent

    def __iter__(self):
        try:
            for chunk in self._chunks():
                self.sent += len(chunk)
                yield chunk
        except BaseException as exc:
            # GeneratorExit: the server stopped iterating (the client went away), no error
            if not isinstance(exc, GeneratorExit):
                self.error = exc
            raise
        self.completed = True

    def _chunks(self):
        chunks = []
        sink = _ListSink(chunks)
        if self.prefix:
            yield self.prefix
        writer = open_writer(self.fmt, sink)
        for window in _windows(self.plan.items, self.window, self.stream_min):
            data = _load(window, self.stream_min)
            for it in window:
                self.done += 1   # counts items as they are written (iterating costs more)
                for _ in self._write_item(writer, it, data):
                    if sink.size >= _CHUNK:
                        yield from sink.take()
                if sink.size >= _CHUNK:
                    yield from sink.take()
            self.plan.release(window)
        writer.close(finish=self.end)
        yield from sink.take()
        if self.suffix:
            yield self.suffix

    def _write_item(self, writer, it, data):
        """Write item `it` through `writer` (`data`: the window's held members), yielding
        now and then so that the caller can drain what was written."""
        kind, body = segment(it, data, None)
        if kind == FILE:
            if it.size > _CHUNK:
                yield from writer.add_file_steps(it.name, body.fileno(), it.offset, it.size)
            else:
                writer.add_file(it.name, body.fileno(), it.offset, it.size)
        elif kind == HELD:
            writer.add(it.name, body)
        elif kind == EMPTY:
            writer.add(it.name, b"")
        elif kind == STREAM:
            yield from writer.add_stream_steps(it.name, it.size, body)
        else:   # HOLE: the placeholder's name
            writer.add(body[0], b"")

    def also_on_close(self, fn):
        """Call `fn(self)` when the body closes, after what `on_close` already does (each
        layer adds its own: the batch log, metrics, admission)."""
        prev = self.on_close

        def both(out):
            try:
                if prev is not None:
                    prev(out)
            finally:
                fn(out)
        self.on_close = both

    def close(self):
        self.plan.close()
        on_close, self.on_close = self.on_close, None
        if on_close is not None:
            on_close(self)


def _hole_frame(it, hole):
    """The frame a HOLE segment puts in item `it`'s place in a sized TAR."""
    name, frame = hole
    if frame is None:
        raise HoleError(f"{it.name}: no node could deliver it, and its placeholder "
                        f"{name[:100]!r} does not fit the length already announced")
    return frame


class _ListSink:
    """A write-only sink that collects chunks for the WSGI iterator."""

    def __init__(self, chunks):
        self.chunks = chunks
        self.size = 0

    def write(self, b):
        self.chunks.append(bytes(b))
        self.size += len(b)
        return len(b)

    def take(self):
        out = self.chunks[:]
        self.chunks.clear()
        self.size = 0
        return out
