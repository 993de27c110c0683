"""A node's one HTTP client towards its peers.

Every intra-cluster call goes through a node's `Peers` (Cluster.start makes it in the
worker, so two nodes in one process share nothing): the control calls (`request`: ping,
push, stamps, states, catch-up, rebalance, jobs, epochs, object and bucket operations) and the
GetBatch sub-batch streams (peerstream.PeerStream speaks its part of HTTP itself, over a
connection taken from here). It keeps the idle keep-alive connections to each peer, the TLS
context an https:// peer is checked with (the node's CA and client certificate), the cluster
secret sent on every control call, the timeouts, and the one error mapping: a peer that cannot
be reached or stops answering is `PeerUnavailable`; anything it answers, whatever the status,
is a `PeerResponse`.

Intra-cluster endpoints (under `PEER_PREFIX`) answer only requests that carry the cluster's
secret in `SECRET_HEADER`; `secret_ok` is the check the server applies. A client of the cluster
never has the secret, so it cannot reach them.
"""
from __future__ import annotations

import hmac
import http.client
import json
import select
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from ..store.errors import Unavailable
from ..tls import ClientTLS

SECRET_HEADER = "Getbatch-Cluster-Secret"
STAMP_HEADER = "Getbatch-Stamp"   # the version stamp of a copy sent, stored or deleted
TOMB_HEADER = "Getbatch-Tomb"     # on a 404: the name was deleted, by the write so stamped
PEER_PREFIX = "/v1/_peer"
CONNECT_TIMEOUT = 2.0   # seconds a control call waits for a new connection to a peer
TIMEOUT = 30.0          # seconds a control call waits for each read, unless it says otherwise
IDLE_MAX = 16           # idle connections kept per peer
BODY_CHUNK = 1 << 20    # a streamed request body is sent in reads of this size

Address = tuple[str, str, int]             # (scheme, host, port)


class Node(Protocol):
    """What the client needs of a peer (smap.NodeInfo)."""
    @property
    def id(self) -> str: ...
    @property
    def url(self) -> str: ...


class PeerUnavailable(Unavailable):
    """A peer did not answer (refused, reset, timed out). A store `Unavailable`: where no other
    node can stand in, the client gets a 503."""

    def __init__(self, node: Node, reason: str) -> None:
        self.node = node
        Exception.__init__(self, f"peer {node.id} at {node.url} is unreachable ({reason})")


def secret_ok(secret: str, presented: str | None) -> bool:
    """True when `presented` (a header value, maybe None) is the cluster secret."""
    return presented is not None and hmac.compare_digest(presented.encode(), secret.encode())


def address(url: str) -> Address:
    """(scheme, host, port) of a peer's URL: the key its connections are pooled under."""
    u = urllib.parse.urlsplit(url)
    return u.scheme, u.hostname or "", u.port or (443 if u.scheme == "https" else 80)


def describe(exc: BaseException) -> str:
    """What went wrong with a connection, for the operator (`Connection refused`, ...)."""
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


class PeerResponse:
    """A peer's answer: `status_code`, `headers` (names case-insensitive) and the body, read
    whole (`content`) or in pieces (`iter_content`, after a request with `stream=True`). Read to
    its end, its connection goes back to the pool; `close` drops it otherwise."""

    def __init__(self, peers: Peers, addr: Address, sock: socket.socket,
                 resp: http.client.HTTPResponse, method: str) -> None:
        self.status_code = resp.status
        self.headers = resp.headers
        self.method = method
        self._peers = peers
        self._addr = addr
        self._sock: socket.socket | None = sock
        self._resp = resp
        self._content: bytes | None = None

    @property
    def content(self) -> bytes:
        if self._content is None:
            self._content = self._resp.read()
            self._finish()
        return self._content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON (ValueError when it is not)."""
        return json.loads(self.content)

    def iter_content(self, size: int) -> Iterator[bytes]:
        """The body in pieces of up to `size` bytes (OSError or http.client.HTTPException when
        the peer breaks off)."""
        while data := self._resp.read(size):
            yield data
        self._finish()

    def _finish(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self._resp.isclosed() and not self._resp.will_close:
            self._peers.give_back(self._addr, sock)
        else:
            self._resp.close()
            sock.close()

    def close(self) -> None:
        """Done with the answer: its connection is kept if it was read whole, else dropped."""
        self._finish()


class Peers:
    """A node's connections to its peers (thread-safe). `secret`: sent on every control call
    (None: none, for a node that only streams sub-batches with its own headers); `tls`: the
    node's ClientTLS towards https:// peers (None: the system's CAs, no client certificate)."""

    def __init__(self, secret: str | None = None, tls: ClientTLS | None = None,
                 timeout: float = TIMEOUT) -> None:
        self.secret = secret
        self.timeout = timeout
        self._tls = tls
        self._context: ssl.SSLContext | None = None
        self._idle: dict[Address, list[socket.socket]] = {}
        self._lock = threading.Lock()

    @property
    def secret_headers(self) -> dict[str, str]:
        """The header that proves a call comes from the cluster (none without a secret):
        every control call carries it, and a GetBatch's streams are given it."""
        return {SECRET_HEADER: self.secret} if self.secret is not None else {}

    # -- connections (PeerStream uses these directly)

    def connect(self, addr: Address, timeout: float) -> socket.socket:
        """A new connection to `addr` (TLS to an https:// peer); OSError when there is none."""
        scheme, host, port = addr
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                sock = self._tls_context().wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise
        return sock

    def _tls_context(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = (self._tls.context() if self._tls is not None
                             else ssl.create_default_context())
        return self._context

    def take_idle(self, addr: Address) -> socket.socket | None:
        """An idle connection to `addr` the peer has not closed meanwhile, or None."""
        while True:
            with self._lock:
                idle = self._idle.get(addr)
                sock = idle.pop() if idle else None
            if sock is None or not _dropped(sock):
                return sock
            sock.close()

    def give_back(self, addr: Address, sock: socket.socket) -> None:
        """`sock` is between answers: keep it for the next call to `addr` (up to IDLE_MAX)."""
        with self._lock:
            idle = self._idle.setdefault(addr, [])
            if len(idle) < IDLE_MAX:
                idle.append(sock)
                return
        sock.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for socks in idle.values():
            for sock in socks:
                sock.close()

    # -- control calls

    def request(self, node: Node, method: str, path: str, *,
                params: Mapping[str, str] | None = None, data: Any = None, json: Any = None,
                headers: Mapping[str, str] | None = None, timeout: float | None = None,
                stream: bool = False) -> PeerResponse:
        """`method` `node.url + path` (`params`: its query); the answer, any status. `data`:
        bytes, a file-like with a length (a peer_backend.Body; sent with Content-Length) or an
        iterable of bytes (sent chunked); `json`: an object sent as JSON. `timeout`: seconds
        each read may wait (the client's `timeout` when None; a new connection waits
        CONNECT_TIMEOUT). Without `stream` the body is read here. Raises PeerUnavailable when
        the peer cannot be reached or stops answering."""
        read_timeout = self.timeout if timeout is None else timeout
        if params:
            path += "?" + urllib.parse.urlencode(params)
        hdrs = self.secret_headers
        if json is not None:
            data = _json_bytes(json)
            hdrs["Content-Type"] = "application/json"
        if headers:
            hdrs.update(headers)
        if data is not None and hasattr(data, "read"):
            hdrs["Content-Length"] = str(len(data))
        addr = address(node.url)
        try:
            r = self._exchange(addr, method, path, data, hdrs, read_timeout)
            if not stream:
                r.content
            return r
        except (OSError, http.client.HTTPException) as exc:
            raise PeerUnavailable(node, describe(exc)) from None

    def _exchange(self, addr: Address, method: str, path: str, data: Any,
                  headers: dict[str, str], read_timeout: float,
                  reuse: bool = True) -> PeerResponse:
        """Send the request and read the answer's head, on an idle connection when there is
        one; once more on a new one when that connection fails before answering and the body
        can be sent again."""
        sock = self.take_idle(addr) if reuse else None
        pooled = sock is not None
        if sock is None:
            sock = self.connect(addr, CONNECT_TIMEOUT)
        sock.settimeout(read_timeout)
        conn = http.client.HTTPConnection(addr[1], addr[2], blocksize=BODY_CHUNK)
        conn.sock = sock
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
        except (ConnectionError, http.client.BadStatusLine):
            sock.close()
            if pooled and (data is None or isinstance(data, (bytes, bytearray))):
                return self._exchange(addr, method, path, data, headers, read_timeout,
                                      reuse=False)
            raise
        except BaseException:
            sock.close()
            raise
        return PeerResponse(self, addr, sock, resp, method)


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, allow_nan=False).encode()


def _dropped(sock: socket.socket) -> bool:
    """True when an idle connection has something to read: the peer closed it (or broke the
    protocol); either way it cannot carry another request."""
    p = select.poll()
    p.register(sock, select.POLLIN)
    return bool(p.poll(0))

