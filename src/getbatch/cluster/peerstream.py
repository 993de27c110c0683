"""Reading one owner's framed answer (peerwire.py) through a fixed window.

`PeerStream` speaks just enough HTTP/1.1 for the peer protocol over a kept-alive connection
(from the node's peer client, peers.Peers: idle connections per peer, and TLS to an https://
peer with the node's CA and client certificate): it sends the sub-batch, reads the status
line and the plan frame, then hands out item frames as views of one reused buffer of
`WINDOW` bytes. Nothing is read before it is needed, so a peer that is ahead waits in TCP,
not in the DT's memory. A view stays valid until the stream reads again; before it moves or
refills its buffer the stream calls the caller's `flush`, which sends what still points into
it. Every failure (refused, reset, closed early, no byte for `timeout` seconds, a frame that
is not what the plan said) is a `PeerFailed` naming the peer, and the connection is dropped;
an AIS error answer to the plan is a `PeerRefused` carrying its status and message.
A compressed answer (peerzip.py: chunked, one block per chunk) is read block by block and the
plain bytes go through the same window; a block that breaks the framing is a `PeerFailed`.

`LocalStream` is the same interface over this node's own planned items (a stand-in owner when
a peer fails mid-batch and this node holds a replica).
"""
import socket
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NoReturn

import msgspec

from ..archive import tar_entry_size
from ..batch.items import Item
from ..store.attrs import ObjectAttrs
from . import peerwire, peerzip
from .peers import Peers, address, describe
from .smap import NodeInfo

WINDOW = 1 << 20
HEAD_MAX = 64 << 10
_RECV_MIN = 64 << 10      # below this much free room, a refill moves the buffered bytes first

_dec = msgspec.json.Decoder()

Flush = Callable[[], None] | None   # sends what still points into the window (None: nothing)
PlanRows = Sequence[Any]             # each planned item's (name, size, err), as peerwire's


class PeerFailed(Exception):
    def __init__(self, node: NodeInfo, reason: str) -> None:
        super().__init__(f"peer {node.id} ({node.url}): {reason}")
        self.node = node
        self.reason = reason


class PeerRefused(Exception):
    """The peer answered the plan with an AIS error (a bad entry, a missing bucket, ...)."""

    def __init__(self, node: NodeInfo, status: int, message: str) -> None:
        super().__init__(message)
        self.node = node
        self.status = status
        self.message = message


class _Window:
    """The buffer and frame accessors shared by both stream kinds; subclasses define `_read_into`
    (at least one byte into the view, or 0 at the end) and `fail`."""

    def __init__(self, node: NodeInfo, indexes: Iterable[int]) -> None:
        self.buf = bytearray(WINDOW)
        self.lo = self.hi = 0
        self.left = 0             # body bytes not yet read into the buffer
        # the TAR frame length of each planned item, in stream order
        self.frames: array[int] | None = None
        # request index of each planned item (an array: a batch holds one per entry, so no
        # int objects)
        self.indexes = array("q", indexes)
        self.pos = 0              # the item whose frame comes next
        self.last = -1            # the last item the DT takes from this stream
        # position -> ObjectAttrs naming the version of a big item
        self.ids: dict[int, ObjectAttrs] = {}
        self.node = node

    def _read_into(self, view: memoryview) -> int:
        raise NotImplementedError

    def fail(self, reason: str) -> NoReturn:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _need(self, n: int, flush: Flush) -> None:
        """At least `n` (<= WINDOW) bytes buffered from `lo`."""
        while self.hi - self.lo < n:
            if self.left <= 0:
                self.fail(f"stream ended {n - (self.hi - self.lo)} bytes before the frame "
                           "it announced")
            if WINDOW - self.hi < max(_RECV_MIN, n - (self.hi - self.lo)):
                if flush is not None:
                    flush()       # views handed out point into the bytes about to move
                kept = self.hi - self.lo
                self.buf[:kept] = self.buf[self.lo:self.hi]
                self.lo, self.hi = 0, kept
            with memoryview(self.buf) as whole:
                got = self._read_into(whole[self.hi:self.hi + min(WINDOW - self.hi, self.left)])
            if got <= 0:
                self.fail(f"connection closed with {self.left} bytes of the answer missing")
            self.hi += got
            self.left -= got

    def view(self, n: int, flush: Flush) -> memoryview:
        """The next `n` (<= WINDOW) bytes, as a view valid until the next read."""
        self._need(n, flush)
        v = memoryview(self.buf)[self.lo:self.lo + n]
        self.lo += n
        return v

    def pieces(self, n: int, flush: Flush) -> Iterator[memoryview]:
        """The next `n` bytes, in views of at most WINDOW bytes (each valid until the next)."""
        while n > 0:
            if self.hi == self.lo:
                self._need(1, flush)   # reads what has arrived, up to the window
            step = min(n, self.hi - self.lo)
            v = memoryview(self.buf)[self.lo:self.lo + step]
            self.lo += step
            n -= step
            yield v

    def skip(self, n: int, flush: Flush) -> None:
        for _ in self.pieces(n, flush):
            pass

    def seek(self, index: int, flush: Flush) -> None:
        """Skip the frames of items before request index `index` (taken from another node)."""
        assert self.frames is not None, "seek before the plan was read"
        while self.pos < len(self.indexes) and self.indexes[self.pos] != index:
            self.skip(self.frames[self.pos], flush)
            self.pos += 1
        if self.pos >= len(self.indexes):
            raise RuntimeError(f"item {index} is not in the stream of {self.node.id}")

    def take(self, pos: int) -> None:
        """The DT takes the item at position `pos` (and so every frame up to it) from here."""
        self.last = pos

    @property
    def taken(self) -> bool:
        """Whether the DT takes any item from this stream."""
        return self.last >= 0

    def at(self, index: int) -> bool:
        """Whether the next frame is that of request index `index`."""
        return self.pos < len(self.indexes) and self.indexes[self.pos] == index

    def owed(self) -> Sequence[int]:
        """Request indexes of the items whose frames have not been read yet."""
        return self.indexes[self.pos:]

    def version(self, pos: int | None = None) -> ObjectAttrs | None:
        """ObjectAttrs naming the version of the item at position `pos` (default: the next
        frame's), or None when not known."""
        return self.ids.get(self.pos if pos is None else pos)

    def frame_done(self, flush: Flush) -> None:
        """The next frame was read whole: move past it; after the last item taken, finish."""
        self.pos += 1
        if self.pos > self.last:
            self.finish(flush)

    def finish(self, flush: Flush) -> None:
        """Nothing more is taken from here: read what is still sent (placeholders of
        entries this owner lacked, found elsewhere) so that the connection serves the next
        batch and the owner sees its answer taken whole; a stream with more than a window
        left is cut. Then close."""
        assert self.frames is not None, "finish before the plan was read"
        rest = sum(self.frames[self.pos:])
        try:
            if rest <= WINDOW:
                self.skip(rest, flush)
                self.pos = len(self.indexes)
        except PeerFailed:
            pass
        self.close()

    def _planned(self, plan: PlanRows) -> PlanRows:
        self.frames = array("Q", (tar_entry_size(name, size) for name, size, _ in plan))
        return plan

    @property
    def done(self) -> bool:
        return self.left == 0 and self.lo == self.hi


class PeerStream(_Window):
    """One owner's answer to one sub-batch, over a connection of `peers` (the node's
    peers.Peers, whose secret it shows). `timeout`: seconds without a byte before the peer
    counts as stalled (max_wait); `every_id`: the owner names the version of every item, not
    only of big ones."""

    def __init__(self, node: NodeInfo, indexes: Iterable[int], body: bytes, peers: Peers,
                 timeout: float, connect_timeout: float = 5.0, every_id: bool = False) -> None:
        super().__init__(node, indexes)
        self.peers = peers
        self.timeout = timeout
        self.connect_timeout = min(connect_timeout, timeout)
        self.addr = address(node.url)
        self.sock: socket.socket | None = None
        self.pooled: bool | None = False   # None: the peer closes the connection after
        self.zipped = False       # the answer comes in compressed blocks (peerzip.py)
        self.wire = bytearray()   # its bytes received and not yet unpacked
        self.plain = memoryview(b"")   # the unpacked block not yet in the window
        extra = "".join(f"{k}: {v}\r\n" for k, v in peers.secret_headers.items())
        path = peerwire.PATH + (f"?{peerwire.IDS_PARAM}={peerwire.IDS_ALL}" if every_id else "")
        self.request = (f"POST {path} HTTP/1.1\r\nHost: {self.addr[1]}:{self.addr[2]}\r\n"
                        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                        f"{peerzip.ACCEPT}: lz4, snappy\r\n{extra}\r\n").encode() + body

    def fail(self, reason: str) -> NoReturn:
        self.close()
        raise PeerFailed(self.node, reason)

    def send(self) -> None:
        """Send the sub-batch (on an idle pooled connection when there is one)."""
        sock = self.peers.take_idle(self.addr)
        self.pooled = sock is not None
        try:
            if sock is None:
                sock = self.peers.connect(self.addr, self.connect_timeout)
            self.sock = sock
            sock.settimeout(self.timeout)
            sock.sendall(self.request)
        except OSError as exc:
            if self.pooled:
                return self._resend()
            self.fail(f"cannot send the sub-batch: {describe(exc)}")

    def _resend(self) -> None:
        """A pooled connection the peer had closed meanwhile: once more on a new one."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.pooled = False
        self.send()

    def _connected(self) -> socket.socket:
        assert self.sock is not None, "read from a stream not sent or already closed"
        return self.sock

    def _read_into(self, view: memoryview) -> int:
        if self.zipped:
            return self._unzip_into(view)
        try:
            return self._connected().recv_into(view)
        except socket.timeout:
            self.fail(f"no data for {self.timeout:g}s (max_wait)")
        except OSError as exc:
            self.fail(describe(exc))

    # -- a compressed answer: chunks of one block each

    def _unzip_into(self, view: memoryview) -> int:
        while not self.plain:
            try:
                self.plain = memoryview(peerzip.unpack(self._chunk()))
            except peerzip.ZipError as exc:
                self.fail(str(exc))
            if len(self.plain) > self.left:
                self.fail("compressed answer: more bytes than its length")
        n = min(len(view), len(self.plain))
        view[:n] = self.plain[:n]
        self.plain = self.plain[n:]
        if not self.plain and self.left - n == 0:
            self._chunk_end()   # the last block: read the end of the chunked body too
        return n

    def _wire_more(self) -> None:
        try:
            got = self._connected().recv(_RECV_MIN)
        except socket.timeout:
            self.fail(f"no data for {self.timeout:g}s (max_wait)")
        except OSError as exc:
            self.fail(describe(exc))
        if not got:
            self.fail(f"connection closed with {self.left} bytes of the answer missing")
        self.wire += got

    def _wire_line(self) -> bytes:
        while True:
            end = self.wire.find(b"\r\n", 0, 64)
            if end >= 0:
                line = bytes(self.wire[:end])
                del self.wire[:end + 2]
                return line
            if len(self.wire) >= 64:
                self.fail("compressed answer: a chunk size line too long")
            self._wire_more()

    def _chunk(self) -> bytes:
        """The payload of the next HTTP chunk (one block)."""
        line = self._wire_line()
        try:
            size = int(line.split(b";", 1)[0], 16)
        except ValueError:
            self.fail(f"compressed answer: bad chunk size {line[:20]!r}")
        if size == 0:
            self.fail(f"compressed answer ended with {self.left} bytes missing")
        if size > peerzip.WIRE_MAX:
            self.fail(f"compressed answer: a chunk of {size} bytes")
        while len(self.wire) < size + 2:
            self._wire_more()
        if self.wire[size:size + 2] != b"\r\n":
            self.fail("compressed answer: a chunk without its end")
        block = bytes(self.wire[:size])
        del self.wire[:size + 2]
        return block

    def _chunk_end(self) -> None:
        line = self._wire_line()
        if line.split(b";", 1)[0].strip(b"0") or not line.strip():
            self.fail("compressed answer: more blocks than its length")
        if self._wire_line():
            self.fail("compressed answer: trailers after the last chunk")
        if self.wire:
            self.fail("compressed answer: bytes after its end")

    def read_plan(self) -> PlanRows:
        """Phase 1: the status line, then the plan frame. Raises PeerRefused for an AIS error
        answer, PeerFailed when the peer cannot answer."""
        status, length = self._read_head()
        if self.zipped and status == 200:
            self.wire = bytearray(self.buf[self.lo:self.hi])   # chunked bytes, not plain
            self.lo = self.hi = 0
        self.left = length - (self.hi - self.lo)
        if status != 200:
            if length > HEAD_MAX:
                self.fail(f"error answer {status} of {length} bytes")
            self._need(length, None)
            body = bytes(self.view(length, None))
            self.release()
            try:
                msg = _dec.decode(body).get("message") or body.decode("utf-8", "replace")
            except (msgspec.DecodeError, AttributeError):
                msg = body.decode("utf-8", "replace")
            raise PeerRefused(self.node, status, msg)
        try:
            n = peerwire.plan_length(self.view(peerwire.PLAN_HEAD, None))
            frame = bytearray()
            while len(frame) < n:
                frame += self.view(min(WINDOW, n - len(frame)), None)
            _, plan, self.ids = peerwire.parse_plan(frame, len(self.indexes))
        except peerwire.WireError as exc:
            self.fail(str(exc))
        return self._planned(plan)

    def _read_head(self) -> tuple[int, int]:
        """(status, Content-Length) of the answer; the bytes after the head stay buffered."""
        while True:
            end = self.buf.find(b"\r\n\r\n", 0, self.hi)
            if end >= 0:
                break
            if self.hi >= HEAD_MAX:
                self.fail("answer head too long")
            try:
                got = self._connected().recv_into(memoryview(self.buf)[self.hi:HEAD_MAX])
            except socket.timeout:
                self.fail(f"no answer for {self.timeout:g}s (max_wait)")
            except OSError as exc:
                got = 0
                if not self.pooled:
                    self.fail(describe(exc))
            if got == 0:
                if self.pooled and self.hi == 0:
                    self._resend()
                    continue
                self.fail("connection closed before the answer")
            self.hi += got
        # answered: the sub-batch is not held while the stream lasts (until now a pooled
        # connection the peer had closed may need it sent again)
        self.request = b""
        head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        self.lo = end + 4
        if head[0].startswith("HTTP/1.0"):
            self.pooled = None
        try:
            status = int(head[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            self.fail(f"not an HTTP answer: {head[0][:80]!r}")
        length: int | None = None
        raw: int | None = None
        chunked = False
        for line in head[1:]:
            k, _, v = line.partition(":")
            k, v = k.strip().lower(), v.strip()
            if k in ("content-length", peerzip.RAW_LENGTH.lower()):
                if not v.isdigit() or not v.isascii():
                    self.fail(f"answer with {k} {v[:40]!r}")
                if k == "content-length":
                    length = int(v)
                else:
                    raw = int(v)
            elif k == "transfer-encoding":
                chunked = v.lower() == "chunked"
            elif k == "connection" and v.lower() == "close":
                self.pooled = None   # not reusable
        if chunked and raw is not None and length is None:
            self.zipped = True
            return status, raw
        if length is None:
            self.fail("answer without Content-Length")
        return status, length

    def release(self) -> None:
        """The answer is read to its end: keep the connection for the next sub-batch."""
        if self.sock is not None and self.done and self.pooled is not None:
            self.peers.give_back(self.addr, self.sock)
        elif self.sock is not None:
            self.sock.close()
        self.sock = None

    def close(self) -> None:
        """Drop the connection (unless the answer was read whole, then it is kept)."""
        if self.sock is not None:
            if self.done and self.frames is not None:
                self.release()
            else:
                self.sock.close()
                self.sock = None


class LocalStream(_Window):
    """Frames of items this node planned itself, produced by `chunks` (an iterator of bytes:
    a TAR-framed BatchOutput without archive end) and consumed like a peer's."""

    def __init__(self, node: NodeInfo, indexes: Iterable[int], plan_items: Sequence[Item],
                 chunks: Iterable[bytes], total: int, on_close: Callable[[], None] | None,
                 identity: Callable[[Item], ObjectAttrs | None], every_id: bool = False) -> None:
        """`identity(item)`: the ObjectAttrs naming an item's version, or None; known for
        big items (`every_id`: for every item)."""
        super().__init__(node, indexes)
        self.plan = self._planned([(it.name, it.size, it.err) for it in plan_items])  # few
        least = 0 if every_id else peerwire.RESUMABLE
        named = [pos for pos, (_, size, err) in enumerate(self.plan)
                 if size >= least and err is None]
        self.ids = {pos: a for pos in named if (a := identity(plan_items[pos])) is not None}
        self.left = total
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")
        self._on_close = on_close

    def fail(self, reason: str) -> NoReturn:
        self.close()
        raise PeerFailed(self.node, reason)

    def _read_into(self, view: memoryview) -> int:
        if not self._pending:
            try:
                self._pending = memoryview(next(self._chunks))
            except StopIteration:
                return 0
            except Exception as exc:  # a local read failing: as for a peer, try elsewhere
                self.fail(f"local read failed: {exc}")
        n = min(len(view), len(self._pending))
        view[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()

