"""A client connection as GetBatchWorker's event loop sees it.

The socket carries kernel deadlines for its blocking reads and writes (set once per
connection). The request head is buffered here until it is complete, and so is a small
body of known length (a GetBatch request, a bucket action, a small PUT): a thread then
gets a request it can serve without waiting on the client. A connection the loop turns
away gets a minimal AIS-style answer without ever reaching a thread. On a node that serves
HTTPS the socket is a `TLSClientSocket`, whose handshake the loop drives too.
"""
import json
import os
import socket
import ssl
import struct

from gunicorn.workers.gthread import TConn

# Bytes of request head buffered per connection before it is answered 431. nginx's default
# (large_client_header_buffers 4 8k); AIS requests have heads of a few hundred bytes. It
# bounds what a slow client can make the loop hold: max_connections x 32 KiB per process.
HEAD_MAX = 32 << 10
# largest single read while waiting for a request (what follows it stays buffered for
# the request's thread)
RECV_SIZE = 64 << 10
# bodies up to this size are read by the loop before a thread takes the request; larger
# ones are read by the thread, each recv bounded by body_timeout
BODY_BUFFER_MAX = 1 << 20
# bytes per write to a TLS client: each write costs TLS records and a system call, so a
# response is not sent in the small pieces it is made of (bench/RESULTS.md, "TLS")
TLS_WRITE = 256 << 10


def _timeval(seconds):
    secs = int(seconds)
    return struct.pack("ll", secs, int((seconds - secs) * 1e6))


class ClientSocket(socket.socket):
    """An accepted socket whose blocking calls are bounded: each recv waits at most
    `body_timeout` and each send `send_timeout` for progress (SO_RCVTIMEO/SO_SNDTIMEO,
    so a blocking call fails with EAGAIN once a client stalls that long)."""

    @classmethod
    def adopt(cls, sock, body_timeout, send_timeout):
        s = cls(fileno=sock.detach())
        s.send_timeout = send_timeout
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(body_timeout))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(send_timeout))
        s.setblocking(False)
        return s

    def sendfile(self, file, offset=0, count=None):
        # socket.sendfile() on a blocking socket waits for room without limit once the
        # kernel timeout fires; in timeout mode it waits at most the timeout each time
        self.settimeout(self.send_timeout)
        try:
            return super().sendfile(file, offset, count)
        finally:
            self.settimeout(None)


class TLSClientSocket(ssl.SSLSocket):
    """ClientSocket's bounds over TLS. Kernel timeouts cannot bound a blocking SSL socket
    (OpenSSL retries a read that failed with EAGAIN at once, spinning), so blocking mode is
    Python's timeout mode here: each read waits at most `body_timeout` for data, each send
    `send_timeout` for room. Made by `adopt`; the handshake is left to the caller."""

    @classmethod
    def adopt(cls, context, sock, body_timeout, send_timeout):
        sock.setblocking(False)
        if context.sslsocket_class is not cls:
            context.sslsocket_class = cls
        s = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        s.body_timeout = body_timeout
        s.send_timeout = send_timeout
        return s

    def setblocking(self, flag):
        self.settimeout(self.body_timeout if flag else 0.0)

    def sendfile(self, file, offset=0, count=None):
        # socket's fallback for TLS sends 8 KiB at a time, each write its own TLS record
        # and system call
        fd, sent = file.fileno(), 0
        while count is None or sent < count:
            data = os.pread(fd, TLS_WRITE if count is None else min(TLS_WRITE, count - sent),
                            offset + sent)
            if not data:
                break
            self.sendall(data)
            sent += len(data)
        if sent:
            file.seek(offset + sent)
        return sent

    def send(self, data, flags=0):
        if not self.gettimeout() or self.send_timeout == self.body_timeout:
            return super().send(data, flags)
        self.settimeout(self.send_timeout)
        try:
            return super().send(data, flags)
        finally:
            self.settimeout(self.body_timeout)


class Conn(TConn):
    """gunicorn's connection state, plus what the event loop tracks while the connection
    waits for (the rest of) a request head, or lingers while closing."""

    def __init__(self, cfg, sock, client, server, key):
        super().__init__(cfg, sock, client, server)
        self.key = key              # the client address the per-client cap counts
        self.head = bytearray()     # bytes of the next request read so far
        self.need = None            # bytes to buffer before a thread takes it (None: head incomplete)
        self.held = 0               # bytes of `head` counted in the worker's total
        self.deadline = 0.0         # monotonic time the current wait ends
        self.idle = False           # kept alive, no byte of the next request yet
        self.closing = False        # write side shut, draining until the client closes
        self.drained = 0
        self.linger_until = 0.0     # while closing: the drain ends by then whatever comes
        self.closed = False
        self.tls = isinstance(sock, ssl.SSLSocket)
        self.handshaking = self.tls   # the TLS handshake is not done yet

    def take(self, data):
        """Add bytes of the next request; True once a thread can take it."""
        start = max(0, len(self.head) - 3)
        self.head += data
        if self.need is None:
            end = head_end(self.head, start)
            if end < 0:
                return False
            n = body_length(self.head[:end])
            self.need = end + (n if n <= BODY_BUFFER_MAX else 0)
        return len(self.head) >= self.need

    def reset(self):
        """Make way for the next request on this connection."""
        self.head = bytearray()
        self.need = None


def head_end(buf, start=0):
    """Where the request head in `buf` ends, or -1 if it is incomplete. An empty line ends
    it; a bare-LF one too, so that gunicorn's parser, not a timeout, answers it."""
    i = buf.find(b"\r\n\r\n", start)
    if i >= 0:
        return i + 4
    i = buf.find(b"\n\n", start)
    return i + 2 if i >= 0 else -1


def body_length(head):
    """The Content-Length of a request head when the loop may read that body itself; 0
    when it must not: no body, chunked, `Expect: 100-continue` (the client waits for an
    answer before sending it), or anything the loop cannot parse with certainty; gunicorn's
    parser decides those in the thread."""
    if not head.endswith(b"\r\n\r\n"):
        return 0
    length = None
    for line in head[:-4].split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        if not colon or name != name.strip():
            return 0
        name = name.lower()
        if name in (b"transfer-encoding", b"expect"):
            return 0
        if name == b"content-length":
            value = value.strip()
            if length is not None or not value.isdigit():
                return 0
            length = int(value)
    return length or 0


def redirect_probe(head):
    """The target of a request the AIStore SDK sends over HTTPS as its head alone (its body
    announced, `Connection: close`): it waits for a proxy's 307 to a target before sending the
    body. None for any other request, and for one already redirected (`pid` in its query, as
    AIS marks a request a proxy redirected)."""
    lines = bytes(head).split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        return None
    query = parts[1].partition(b"?")[2]
    if any(p.partition(b"=")[0] == b"pid" for p in query.split(b"&")):
        return None
    close = length = host = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip()
        if name == b"connection":
            close = value.lower() == b"close"
        elif name == b"content-length":
            length = int(value) if value.isdigit() else None
        elif name == b"host":
            host = value
    if not (close and length and host):
        return None
    return host.decode("latin-1"), parts[1].decode("latin-1")


def minimal_response(status, reason, message, extra_headers=()):
    """A complete HTTP/1.1 response with an AIS-style JSON error body; the connection closes."""
    body = json.dumps({"message": message, "status": status}).encode() + b"\n"
    head = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json",
            f"Content-Length: {len(body)}", "Connection: close", *extra_headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def send_and_close(sock, data):
    """Best effort, never blocking: what is already received is read first, so that the
    close does not turn into an RST that could destroy the answer in flight."""
    try:
        sock.setblocking(False)
        try:
            for _ in range(4):
                if not sock.recv(RECV_SIZE):
                    break
        except OSError:
            pass
        sock.send(data)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        sock.close()
