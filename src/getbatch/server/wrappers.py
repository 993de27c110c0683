"""The WSGI wrappers GetBatchWorker puts around the app (worker.py wires them in load_wsgi).

Zero copy. gunicorn's own sendfile path covers only a response that is one file. When the
app answers with a `BatchOutput` of known length, `ZeroCopyApp` hands gunicorn an iterator
whose first (empty) item makes it send the status line and headers, after which the emit
loop writes the body straight to the client socket: small items gathered with pread into
one buffer, large ones with sendfile. Other responses are iterated as usual, guarded: a
failure mid-stream closes the connection with one log line. Where sendfile pays depends on
the peer. Over loopback, measured on the project's 2-core VM, copying through the 1 MiB
buffer beat sendfile at every size (1 GiB object: 3.3 vs 2.4 GB/s; 64 KiB objects: 40K vs
30K files/s), so loopback clients get copies. Remote clients get sendfile for items of
`sendfile_min` bytes and more, sparing the CPU a copy; `sendfile_loopback` uses it for
loopback clients too. TLS bodies are encrypted in the process, so the zero-copy path is off
for TLS connections and small chunks are joined into larger writes.

`BodyDeadline` turns a stalled or vanished request body into a 408 or 400 the app renders;
`TLSInfo` tells the app the scheme and whether the client showed a verified certificate.
"""
import logging
import socket
import ssl

import falcon

from ..batch.assemble import BatchOutput
from ..tls import CLIENT_CERT
from .conn import TLS_WRITE

log = logging.getLogger("getbatch.worker")

NEVER = 1 << 62   # a sendfile threshold no item reaches


def sendfile_min_for(sock, config):
    """The item size from which the emit loop uses sendfile for this client."""
    if config.sendfile_loopback:
        return config.sendfile_min
    try:
        local = sock.family == socket.AF_UNIX or is_loopback(sock.getpeername()[0])
    except (OSError, IndexError, TypeError):
        local = False
    return NEVER if local else config.sendfile_min


def is_loopback(addr):
    """127.0.0.0/8, ::1 and IPv4-mapped 127/8, by text: `ipaddress` parsing costs 10-20 µs
    per batch request (bench/RESULTS.md, S1)."""
    return addr.startswith(("127.", "::ffff:127.")) or addr == "::1"


def abort_body(what, sock, exc):
    """After the status line, closing the connection is the only way left to tell the
    client the body is incomplete (Content-Length unmet, or no final chunk)."""
    log.warning("%s aborted after the status line, connection closed: %s", what, exc)
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class GuardedBody:
    """A streamed body (a compressed batch, a Range, an archived file): a failure mid-stream
    closes the connection with one log line instead of a traceback from gunicorn."""

    def __init__(self, body, sock, what):
        self.body = body
        self.sock = sock
        self.what = what

    def __iter__(self):
        try:
            yield from self.body
        except Exception as exc:
            abort_body(self.what, self.sock, exc)

    def close(self):
        close = getattr(self.body, "close", None)
        if close is not None:
            close()


class JoinedBody(GuardedBody):
    """A streamed body to a TLS client, its small chunks joined into writes of about
    TLS_WRITE bytes: each write costs TLS records and a system call, and a TAR of small
    items comes as three chunks an item (measured: bench/RESULTS.md, "TLS")."""

    def __iter__(self):
        parts, size = [], 0
        try:
            for chunk in self.body:
                parts.append(chunk)
                size += len(chunk)
                if size >= TLS_WRITE:
                    yield b"".join(parts)
                    parts, size = [], 0
            if parts:
                yield b"".join(parts)
        except Exception as exc:
            abort_body(self.what, self.sock, exc)


class DirectSend(GuardedBody):
    """The zero-copy path: headers through gunicorn, then the emit loop on the socket."""

    def __init__(self, body, sock, config):
        super().__init__(body, sock, f"batch {body.plan.uuid}")
        self.config = config

    def __iter__(self):
        yield b""
        try:
            # every blocking send on the socket waits at most send_timeout (ClientSocket);
            # the emit loop bounds its own waits for room the same, and turns a timeout
            # into an EmitError: a stalled client cannot pin this thread
            self.body.emit_to(self.sock.fileno(), sendfile_min_for(self.sock, self.config),
                              timeout_ms=int(self.config.send_timeout * 1000))
        except Exception as exc:
            abort_body(self.what, self.sock, exc)


class ZeroCopyApp:
    """WSGI middleware that routes zero-copy batch bodies to the client socket and guards
    every other streamed body (whole bodies in a list, and files, cannot fail mid-way)."""

    def __init__(self, app, config):
        self.app = app
        self.config = config

    def __call__(self, environ, start_response):
        result = self.app(environ, start_response)
        sock = environ.get("gunicorn.socket")
        if sock is None or isinstance(result, (list, tuple, environ["wsgi.file_wrapper"])):
            return result
        tls = isinstance(sock, ssl.SSLSocket)
        if isinstance(result, BatchOutput):
            if result.zero_copy and not tls:
                return DirectSend(result, sock, self.config)
            return (JoinedBody if tls else GuardedBody)(result, sock, f"batch {result.plan.uuid}")
        return (JoinedBody if tls else GuardedBody)(result, sock, f"{environ.get('REQUEST_METHOD')} "
                                                           f"{environ.get('PATH_INFO')!r}")


class GuardedInput:
    """wsgi.input, with the failures of a slow or vanished client turned into HTTP errors
    the app renders (408, 400) rather than internal errors. gunicorn marks the body as
    failed, so the connection closes after the answer."""

    def __init__(self, body, environ, config):
        self.body = body
        self.environ = environ
        self.config = config

    def read(self, size=None):
        return self._guard(self.body.read, size)

    def readline(self, size=None):
        return self._guard(self.body.readline, size)

    def readlines(self, hint=None):
        return self._guard(self.body.readlines, hint)

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def _guard(self, read, arg):
        try:
            return read(arg)
        except (BlockingIOError, TimeoutError):
            # SO_RCVTIMEO fired: no byte for body_timeout
            secs = self.config.body_timeout
            e = self.environ
            log.info("%s %s from %s: request body stalled for %gs (body_timeout); request dropped",
                     e.get("REQUEST_METHOD"), e.get("PATH_INFO"), e.get("REMOTE_ADDR"), secs)
            raise falcon.HTTPError(falcon.HTTP_408, description=(
                f"request body stalled: no data for {secs:g}s (body_timeout)")) from None
        except ConnectionError:
            raise falcon.HTTPError(falcon.HTTP_400, description=(
                "the client closed the connection in the middle of the request body")) from None


class BodyDeadline:
    """WSGI middleware that hands the app the guarded wsgi.input (see GuardedInput)."""

    def __init__(self, app, config):
        self.app = app
        self.config = config

    def __call__(self, environ, start_response):
        environ["wsgi.input"] = GuardedInput(environ["wsgi.input"], environ, self.config)
        return self.app(environ, start_response)


class TLSInfo:
    """WSGI middleware of a node serving HTTPS: the URL scheme, and whether the client showed
    a verified certificate (CLIENT_CERT)."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        sock = environ.get("gunicorn.socket")
        if isinstance(sock, ssl.SSLSocket):
            environ["wsgi.url_scheme"] = "https"
            environ[CLIENT_CERT] = sock.getpeercert(binary_form=True) is not None
        return self.app(environ, start_response)
