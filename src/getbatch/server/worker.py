"""The gunicorn worker getbatch runs under: gthread's thread pool, with request heads read
in the event loop, deadlines and caps per connection, a stop that always completes, and
the zero-copy path for GetBatch bodies. It builds on gthread's internals, so it runs
under the gunicorn versions gunicorn_compat.py admits. Settings come from the node's `Config`.

Slow, idle and vanishing clients. gthread hands each new connection to a pool thread,
which then blocks reading the request head: a few dozen clients that connect and send
nothing, or send a byte per second, hold every thread and the node stops answering.
Here the event loop reads heads without blocking, buffering until a head is complete
(and a body of known length up to conn.BODY_BUFFER_MAX with it), and only then hands the
connection, with the bytes read, to a thread. Deadlines:
- header_timeout: a new connection has this long from connecting, a kept-alive one from
  the first byte of its next request, to send a complete head; then it is closed (with a
  408 if part of a head came);
- keepalive: an idle kept-alive connection is closed after this long;
- body_timeout: a request body may go this long without a byte, in the loop or in a
  handler's read (SO_RCVTIMEO); then the request fails (408) and the connection closes;
- send_timeout: a send waits at most this long for the client to take data (SO_SNDTIMEO,
  and the emit loop's poll).
Caps: max_connections open connections per process (beyond it the listener is not
polled: new connections wait in the kernel's backlog) and max_client_connections per
client address (beyond it a new connection gets a minimal 503 and is closed).

Stopping. SIGTERM stops gracefully: no new connections, requests in flight finish (for up
to gunicorn's graceful_timeout), idle connections close within STOP_LINGER. SIGINT and
SIGQUIT stop quickly (Ctrl-C reaches every process of the group, and the master then
sends SIGQUIT): connections are shut down and threads get QUICK_GRACE to unwind. The
signal handlers only set flags and wake the loop. gthread's quit handler shuts its
executor down and raises SystemExit from inside the handler; run twice (SIGINT, then the
master's SIGQUIT) it can deadlock, and the master SIGKILLs the worker after
graceful_timeout. The pool's threads are daemon threads, so the process never waits at
exit for a handler that does not return.

Zero copy, and the other WSGI wrappers around the app: wrappers.py. The request threads:
daemonpool.py. This module is the event loop.

TLS. With `tls_cert` the node serves HTTPS: each accepted socket is wrapped (conn.py,
TLSClientSocket) and the event loop drives its handshake without blocking, under
header_timeout, before it reads a head. Plain HTTP sent to it gets a plain 400 saying so.
The WSGI environ says `https`, and carries whether
the client showed a certificate the CA (tls_ca) verified (wrappers.TLSInfo), which the
intra-cluster guard requires of peers. The AIStore SDK sends a request with a body over HTTPS
as its head alone and waits for a redirect to a target (conn.redirect_probe): the loop
answers it with a 307 back to this node.
"""
import errno
import logging
import math
import selectors
import signal
import socket
import ssl
import sys
import time
from collections import Counter
from functools import partial
from urllib.parse import quote

from . import gunicorn_compat  # noqa: F401  (first: it checks the gunicorn version)

from gunicorn import http, util
from gunicorn.workers.gthread import ThreadWorker

from ..cluster.peers import PEER_PREFIX
from ..config import Config, ConfigError
from ..tls import server_context
from .conn import (HEAD_MAX, RECV_SIZE, ClientSocket, Conn, TLSClientSocket,
                   minimal_response, redirect_probe, send_and_close)
from .daemonpool import DaemonPool
from .retryafter import retry_after
from .wrappers import BodyDeadline, TLSInfo, ZeroCopyApp

log = logging.getLogger("getbatch.worker")

ACCEPT_BATCH = 1       # connections accepted per wake-up: every worker is woken, one each spreads a burst
SWEEP_EVERY = 0.1      # deadlines are checked at most this often (their precision)
# A closing connection drains what the client still sends (RFC 9112 9.6), as nginx's
# lingering_close does: a client still sending a refused body (a 413 answered from the head)
# reads the answer once it is done sending, instead of a reset. The drain goes on while bytes
# keep coming (each within CLOSE_LINGER of the last), for LINGER_MAX and LINGER_BYTES at most.
CLOSE_LINGER = 2.0
LINGER_MAX = 10.0
LINGER_BYTES = 256 << 20
STOP_LINGER = 0.5      # graceful stop: how long idle and half-received connections stay open
                       # (a request a client sent just before the stop still gets an answer)
QUICK_GRACE = 1.0      # quick stop: how long threads get once their sockets are shut down
ACCEPT_PAUSE = 0.5     # accept() failed for lack of fds or memory: retry after this long
REPORT_EVERY = 30.0    # connections dropped for deadlines or caps are logged in one line per period
UNREAD_MAX = 1 << 20   # a body left unread beyond this is not drained to reach the next request
HELD_MAX = 64 << 20    # bytes of requests the loop holds at once; beyond, bodies are read in threads
WORKER_BOOT_ERROR = 3  # gunicorn's exit code for "worker failed to boot": the master stops
# Intra-cluster requests (a peer's part of a GetBatch, an object read for another node) run
# in threads of their own, started as needed: a GetBatch thread waits on peers, and if peers'
# requests queued behind the same threads, nodes serving each other's batches could all wait
# at once. A peer request waits on nothing but its own disk and its reader, so a thread per
# request in flight is enough; this bounds them per process.
PEER_THREADS_MAX = 128
_PEER_PATH = PEER_PREFIX.encode() + b"/"
_NOT_TLS = minimal_response(400, "Bad Request", "this node serves HTTPS: plain HTTP was sent to "
                                                "its TLS port (use an https:// URL)")


def _is_peer_request(head):
    """True when the request line names an intra-cluster path."""
    parts = bytes(head[:len(_PEER_PATH) + 16]).split(b" ", 2)
    return len(parts) > 1 and parts[1].startswith(_PEER_PATH)


class GetBatchWorker(ThreadWorker):
    """See the module docstring. Connections live in one of two places: `waiting` (on the
    poller: reading a head, kept alive, or lingering while closing) or `busy` (a thread
    serves a request on it)."""

    def init_process(self):
        try:
            self.config = getattr(self.app, "config", None) or Config.load()
        except ConfigError as exc:
            self.log.error("getbatch worker: %s", exc)
            sys.exit(WORKER_BOOT_ERROR)
        if self.cfg.is_ssl:
            self.log.error("getbatch worker: gunicorn's certfile/keyfile are not used; set "
                           "tls_cert and tls_key (docs/deploy.md)")
            sys.exit(WORKER_BOOT_ERROR)
        self.tls = server_context(self.config)
        # gunicorn's own knobs follow the Config (handle_request() closes each connection
        # after its response when keepalive is 0)
        self.cfg.set("keepalive", math.ceil(self.config.keepalive))
        self.worker_connections = self.max_keepalived = self.config.max_connections
        self.waiting = set()
        self.busy = set()
        self.per_client = Counter()
        self.dropped = Counter()         # (reason, client) -> connections, until the next report
        self.held = 0                    # bytes of requests the loop holds (HELD_MAX)
        self.next_report = 0.0
        self.next_sweep = math.inf
        self.wait_cap = math.inf         # no wait ends later than this (set when stopping)
        self.accept_paused_until = 0.0
        self.quitting = False
        self.listener_names = {}
        self.peer_pool = DaemonPool(0, PEER_THREADS_MAX, "peer")
        super().init_process()

    def load_wsgi(self):
        super().load_wsgi()
        app = BodyDeadline(self.wsgi, self.config)
        if self.tls is not None:
            app = TLSInfo(app)
        self.wsgi = ZeroCopyApp(app, self.config)

    def get_thread_pool(self):
        return DaemonPool(self.cfg.threads)

    # signals: flags and a wake-up only (SimpleQueue.put and a non-blocking pipe write
    # are safe in a handler); the loop does the rest
    def handle_exit(self, sig, frame):
        self.alive = False
        self.method_queue.defer(lambda: None)

    def handle_quit(self, sig, frame):
        self.alive = False
        self.quitting = True
        self.method_queue.defer(lambda: None)

    def run(self):
        self.poller.register(self.method_queue.fileno(), selectors.EVENT_READ,
                             self.method_queue.run_callbacks)
        while self.alive:
            self.notify()
            now = time.monotonic()
            self.set_accept_enabled(self.nr_conns < self.config.max_connections
                                    and now >= self.accept_paused_until)
            timeout = min(1.0, self.next_sweep - now)
            if now < self.accept_paused_until:
                timeout = min(timeout, self.accept_paused_until - now)
            self.wait_for_and_dispatch_events(max(0.0, timeout))
            if not self.is_parent_alive():
                self.alive = False
            self._sweep()
            self._report()
        self._stop()

    # -- accepting

    def accept(self, listener):
        server = self.listener_names.get(listener)
        if server is None:
            server = self.listener_names[listener] = listener.getsockname()
        for _ in range(ACCEPT_BATCH):
            if self.nr_conns >= self.config.max_connections:
                return
            try:
                sock, addr = listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                # out of fds or memory: the listener stays readable, so pause rather than spin
                log.error("cannot accept connections for now (%s); retrying in %gs", exc, ACCEPT_PAUSE)
                self.accept_paused_until = time.monotonic() + ACCEPT_PAUSE
                self.set_accept_enabled(False)
                return
            key = addr[0] if isinstance(addr, tuple) and addr else "local"
            limit = self.config.max_client_connections
            if self.per_client[key] >= limit:
                self._count("refused", key)
                if self.tls is not None:   # before the handshake no answer can be read
                    util.close(sock)
                    continue
                send_and_close(sock, minimal_response(
                    503, "Service Unavailable",
                    f"too many connections from {key}: at most {limit} per client address "
                    "and server process (max_client_connections)",
                    (f"Retry-After: {retry_after('connections')}",)))
                continue
            try:
                if self.tls is not None:
                    csock = TLSClientSocket.adopt(self.tls, sock, self.config.body_timeout,
                                                  self.config.send_timeout)
                else:
                    csock = ClientSocket.adopt(sock, self.config.body_timeout,
                                               self.config.send_timeout)
            except OSError:
                util.close(sock)
                continue
            self.per_client[key] += 1
            self.nr_conns += 1
            self._wait(Conn(self.cfg, csock, addr, server, key),
                       time.monotonic() + self.config.header_timeout)

    # -- connections on the poller

    def _wait(self, conn, deadline):
        conn.deadline = min(deadline, self.wait_cap)
        self.next_sweep = min(self.next_sweep, conn.deadline)
        self.waiting.add(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._readable, conn))

    def _unwait(self, conn):
        if conn in self.waiting:
            self.waiting.discard(conn)
            self.poller.unregister(conn.sock)

    def _readable(self, conn, _sock):
        if conn.handshaking and not self._handshake(conn):
            return
        # TLS: OpenSSL may take more records off the socket than one read hands out, and the
        # poller sees only the socket: read on until it wants more bytes or a thread has it
        # (a closing connection reads the socket itself: its TLS layer is gone)
        while (self._read_once(conn) and conn.tls and not conn.closing
               and conn in self.waiting):
            pass

    def _read_once(self, conn):
        """Take what the client sent; True when bytes came and the request is still waited
        for."""
        try:
            data = conn.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return False
        except OSError:
            data = b""
        if conn.closing:
            conn.drained += len(data)
            if not data or conn.drained > LINGER_BYTES:
                self._close(conn)
                return False
            conn.deadline = min(time.monotonic() + CLOSE_LINGER, conn.linger_until,
                                self.wait_cap)
            self.next_sweep = min(self.next_sweep, conn.deadline)
            return True
        if not data:  # the client left
            self._close(conn)
            return False
        if conn.idle:
            # the next request has begun: the head deadline runs from now
            conn.idle = False
            conn.deadline = min(time.monotonic() + self.config.header_timeout, self.wait_cap)
            self.next_sweep = min(self.next_sweep, conn.deadline)
        conn.held += len(data)
        self.held += len(data)
        ready = conn.take(data)
        if conn.tls and conn.need is not None and conn.head.endswith(b"\r\n\r\n"):
            probe = redirect_probe(conn.head[:-4])
            if probe is not None:
                self._redirect_here(conn, *probe)
                return False
        if ready or (conn.need is not None and self.held > HELD_MAX):
            self._unwait(conn)
            self._dispatch(conn)
            return False
        if conn.need is not None:
            # reading a body: it may stall body_timeout between bytes
            conn.deadline = min(time.monotonic() + self.config.body_timeout, self.wait_cap)
            self.next_sweep = min(self.next_sweep, conn.deadline)
        elif len(conn.head) > HEAD_MAX:
            self._close(conn, minimal_response(
                431, "Request Header Fields Too Large",
                f"request head over {HEAD_MAX // 1024} KiB without its end"))
            return False
        return True

    def _redirect_here(self, conn, host, target):
        """Answer the AIStore SDK's head-only request (conn.redirect_probe): a node is its own
        target, so the 307 sends the whole request back here, marked as redirected."""
        sep = "&" if "?" in target else "?"
        location = f"https://{host}{target}{sep}pid={quote(self.config.node_id, safe='')}"
        self._close(conn, minimal_response(307, "Temporary Redirect", "send the request here",
                                           (f"Location: {location}",)))

    def _handshake(self, conn):
        """One step of a TLS handshake, when the socket is ready for it; True once done."""
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            self.poller.modify(conn.sock, selectors.EVENT_READ, partial(self._readable, conn))
            return False
        except ssl.SSLWantWriteError:
            self.poller.modify(conn.sock, selectors.EVENT_WRITE, partial(self._readable, conn))
            return False
        except ssl.SSLError as exc:
            plain = exc.reason == "HTTP_REQUEST"
            self._count("plain http" if plain else "tls handshake",
                        conn.key if plain else f"{conn.key} ({exc.reason or exc})")
            self._unwait(conn)
            # the answer to plain HTTP goes out as plain text, past the TLS layer
            conn.sock = socket.socket(fileno=conn.sock.detach())
            self._close(conn, _NOT_TLS if plain else None)
            return False
        except OSError:
            self._close(conn)
            return False
        conn.handshaking = False
        self.poller.modify(conn.sock, selectors.EVENT_READ, partial(self._readable, conn))
        return True

    def _release(self, conn):
        self.held -= conn.held
        conn.held = 0

    def _dispatch(self, conn):
        self._release(conn)
        self.busy.add(conn)
        if _is_peer_request(conn.head):
            fut = self.peer_pool.submit(self.handle, conn)
            fut.add_done_callback(lambda f: self.method_queue.defer(self.finish_request, conn, f))
        else:
            self.enqueue_req(conn)

    def _sweep(self):
        """Close the connections whose wait is over."""
        now = time.monotonic()
        if now < self.next_sweep:
            return
        nxt = math.inf
        for conn in list(self.waiting):
            if conn.deadline > now:
                nxt = min(nxt, conn.deadline)
            elif conn.closing or conn.idle:
                self._close(conn)
            elif conn.need is not None:
                self._count("stalled body")
                self._close(conn, minimal_response(
                    408, "Request Timeout",
                    f"request body stalled: no data for {self.config.body_timeout:g}s (body_timeout)"))
            elif conn.head:
                self._count("partial head")
                self._close(conn, minimal_response(
                    408, "Request Timeout",
                    f"no complete request head within {self.config.header_timeout:g}s (header_timeout)"))
            else:
                self._count("no head")
                self._close(conn)
        self.next_sweep = max(nxt, now + SWEEP_EVERY)

    def _close(self, conn, answer=None):
        if conn.closed:
            return
        conn.closed = True
        self._unwait(conn)
        self._release(conn)
        self.nr_conns -= 1
        left = self.per_client[conn.key] - 1
        if left > 0:
            self.per_client[conn.key] = left
        else:
            del self.per_client[conn.key]
        if answer is None:
            util.close(conn.sock)
        else:
            send_and_close(conn.sock, answer)

    def _close_gracefully(self, conn):
        """Half-close, then drain what the client still sends until it closes too, so that
        unread request bytes do not make the kernel reset the connection under the last
        response (RFC 9112 9.6); in the loop, where gunicorn blocks a thread on it."""
        try:
            conn.sock.setblocking(False)
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        conn.closing = True
        now = time.monotonic()
        conn.linger_until = now + LINGER_MAX
        self._wait(conn, now + CLOSE_LINGER)

    def _count(self, reason, client=None):
        if self.alive:  # while stopping, closing connections is no news
            self.dropped[reason, client] += 1

    def _report(self):
        """One log line per period for the connections closed or refused for deadlines and caps."""
        now = time.monotonic()
        if not self.dropped or now < self.next_report:
            return
        parts = []
        for (reason, client), n in sorted(self.dropped.items(), key=lambda kv: -kv[1]):
            if reason == "refused":
                parts.append(f"{n} refused from {client} (over max_client_connections "
                             f"{self.config.max_client_connections})")
            elif reason == "plain http":
                parts.append(f"{n} from {client} sent plain HTTP to the TLS port")
            elif reason == "tls handshake":
                parts.append(f"{n} from {client} failed the TLS handshake")
            elif reason == "stalled body":
                parts.append(f"{n} closed with a request body stalled for "
                             f"{self.config.body_timeout:g}s (body_timeout)")
            else:
                parts.append(f"{n} closed with {'part of a' if reason == 'partial head' else 'no'} "
                             f"request head after {self.config.header_timeout:g}s (header_timeout)")
        log.warning("slow, idle or excess client connections: %s", "; ".join(parts))
        self.dropped.clear()
        self.next_report = now + REPORT_EVERY

    # -- requests in threads

    def handle(self, conn):
        """Serve one request whose head the loop has buffered. Runs in a pool thread;
        returns whether the connection stays open for another request."""
        req = None
        try:
            conn.sock.setblocking(True)
            if conn.parser is None:
                conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
            conn.parser.unreader.unread(conn.head)
            conn.reset()
            req = next(conn.parser)
            return self._keepalive_after(conn, self.handle_request(req, conn))
        except (StopIteration, http.errors.NoMoreData):
            pass
        except (BlockingIOError, TimeoutError):
            log.info("client %s stopped taking or sending data (send_timeout %gs, body_timeout %gs); "
                     "connection closed", conn.client[0] if isinstance(conn.client, tuple) else "local",
                     self.config.send_timeout, self.config.body_timeout)
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ESHUTDOWN):
                log.warning("connection from %s failed: %s", conn.client, exc)
        except Exception as exc:
            self.handle_error(req, conn.sock, conn.client, exc)
        return False

    def handle_request(self, req, conn):
        """gunicorn's, except that a request whose body was left largely unread (refused with
        a 413, say) closes its connection instead of reading the rest to reach the next
        request: a client must not be able to keep a thread busy sending a body nobody reads."""
        keep = super().handle_request(req, conn)
        unread = getattr(getattr(req, "body", None), "reader", None)
        if keep and getattr(unread, "length", 0) > UNREAD_MAX:
            log.info("closing the connection of %s: %d request body bytes left unread",
                     conn.client[0] if isinstance(conn.client, tuple) else "local", unread.length)
            return False
        return keep

    def finish_request(self, conn, fut):
        """A thread is done with `conn` (runs in the loop)."""
        self.busy.discard(conn)
        try:
            keep = fut.result()
        except BaseException:
            keep = False
        if self.quitting:
            self._close(conn)
        elif not keep:
            self._close_gracefully(conn)
        else:
            conn.sock.setblocking(False)
            # pipelined requests, or a body drain, leave bytes of the next request read
            ahead = conn.parser.unreader.take_buffered()
            conn.held = len(ahead)
            self.held += conn.held
            if conn.take(ahead):
                self._dispatch(conn)
                return
            conn.idle = not conn.head
            wait = self.config.keepalive if conn.idle else self.config.header_timeout
            self._wait(conn, time.monotonic() + wait)
            if conn.tls:   # what OpenSSL already holds of the next request
                self._readable(conn, conn.sock)

    # -- stopping

    def _stop(self):
        self.set_accept_enabled(False)
        for s in self.sockets:
            util.close(s)
        now = time.monotonic()
        quick = False
        self.wait_cap = now + STOP_LINGER
        for conn in self.waiting:
            conn.deadline = min(conn.deadline, self.wait_cap)
        self.next_sweep = now
        limit = now + max(0.5, self.cfg.graceful_timeout - 1.0)
        while True:
            if self.quitting and not quick:   # SIGINT or SIGQUIT, possibly during a graceful stop
                quick = True
                self.cfg.worker_int(self)
                self._abort_all()
                limit = min(limit, time.monotonic() + QUICK_GRACE)
            if not (self.waiting or self.busy) or time.monotonic() >= limit:
                break
            self.notify()
            self.wait_for_and_dispatch_events(0.05 if quick else 0.2)
            self._sweep()
        if self.busy:
            log.warning("stopping with %d request(s) unfinished after %s", len(self.busy),
                        f"{QUICK_GRACE:g}s (quick stop)" if quick else
                        f"{self.cfg.graceful_timeout:g}s (graceful_timeout)")
        self._abort_all()
        self._report()
        self.tpool.shutdown()
        self.peer_pool.shutdown()
        # the master signals again (SIGTERM, SIGQUIT) while this process exits, when the
        # interpreter may already have restored the default action (terminate, or dump core)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_IGN)

    def _abort_all(self):
        for conn in list(self.waiting):
            self._close(conn)
        # the threads own these sockets: shutting them down makes their blocking calls
        # return at once, and each thread then finishes and hands its connection back
        for conn in self.busy:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
