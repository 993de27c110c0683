"""A gunicorn `gthread` worker that sends GetBatch TAR bodies through the Cython emit loop.

gunicorn's own sendfile path covers only a response that is one file. This worker wraps
the WSGI app: when the app answers with a `BatchOutput` of known length, gunicorn is
handed an iterator whose first (empty) item makes it send the status line and headers,
after which the emit loop writes the body straight to the client socket: small items
gathered with pread into one buffer, large ones with sendfile. Other responses, and
every response under any other worker or server, are iterated as usual.
"""
import logging
import socket

from gunicorn.workers.gthread import ThreadWorker

from ..archive.errors import EmitError
from ..batch.assemble import BatchOutput

log = logging.getLogger("getbatch.worker")


class _DirectSend:
    def __init__(self, body, sock):
        self.body = body
        self.sock = sock

    def __iter__(self):
        yield b""
        try:
            self.body.emit_to(self.sock.fileno())
        except EmitError as exc:
            # Content-Length was promised: closing the connection is what tells the
            # client the archive is incomplete.
            log.warning("batch %s aborted after the status line: %s", self.body.plan.uuid, exc)
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.body.close()


class ZeroCopyApp:
    """WSGI middleware that routes zero-copy batch bodies to the client socket."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        result = self.app(environ, start_response)
        sock = environ.get("gunicorn.socket")
        if isinstance(result, BatchOutput) and result.zero_copy and sock is not None \
                and environ.get("REQUEST_METHOD") != "HEAD":
            return _DirectSend(result, sock)
        return result


class GetBatchWorker(ThreadWorker):
    def load_wsgi(self):
        super().load_wsgi()
        self.wsgi = ZeroCopyApp(self.wsgi)
