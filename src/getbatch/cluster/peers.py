"""Talking to peers: one pooled keep-alive HTTP session per peer, carrying the cluster secret.

Intra-cluster endpoints (under `PEER_PREFIX`) answer only requests that carry the cluster's
secret in `SECRET_HEADER`; `secret_ok` is the check the server applies. A client of the cluster
never has the secret, so it cannot reach them. `tls` (a getbatch.tls.ClientTLS): the CA a peer's
https:// certificate is checked against, and this node's client certificate.
"""
import hmac
import threading

import requests
from requests.adapters import HTTPAdapter

from ..store.errors import Unavailable

SECRET_HEADER = "Getbatch-Cluster-Secret"
STAMP_HEADER = "Getbatch-Stamp"   # the version stamp of a copy sent, stored or deleted
TOMB_HEADER = "Getbatch-Tomb"     # on a 404: the name was deleted, by the write so stamped
PEER_PREFIX = "/v1/_peer"
TIMEOUT = (2.0, 30.0)   # (connect, read) seconds, unless a call says otherwise


class PeerUnavailable(Unavailable):
    """A peer did not answer (refused, reset, timed out). A store `Unavailable`: where no other
    node can stand in, the client gets a 503."""

    def __init__(self, node, reason):
        self.node = node
        Exception.__init__(self, f"peer {node.id} at {node.url} is unreachable ({reason})")


def secret_ok(secret, presented):
    """True when `presented` (a header value, maybe None) is the cluster secret."""
    return presented is not None and hmac.compare_digest(presented.encode(), secret.encode())


class Peers:
    """Sessions to peers, one per peer URL, made on first use and kept (thread-safe)."""

    def __init__(self, secret, pool_size=16, timeout=TIMEOUT, tls=None):
        self.secret = secret
        self.tls = tls
        self.pool_size = pool_size
        self.timeout = timeout
        self._sessions = {}
        self._lock = threading.Lock()

    def session(self, node):
        """The keep-alive Session to `node` (a NodeInfo); it sends the secret on every request."""
        s = self._sessions.get(node.url)
        if s is None:
            with self._lock:
                s = self._sessions.get(node.url)
                if s is None:
                    s = requests.Session()
                    pool = {"pool_connections": 1, "pool_maxsize": self.pool_size}
                    adapter = (self.tls.adapter(**pool) if self.tls is not None
                               else HTTPAdapter(**pool))
                    s.mount("http://", adapter)
                    s.mount("https://", adapter)
                    s.headers[SECRET_HEADER] = self.secret
                    self._sessions[node.url] = s
        return s

    def request(self, node, method, path, **kw):
        """`method` `node.url + path`; the Response (any status). Raises PeerUnavailable when
        the peer cannot be reached or stops answering."""
        kw.setdefault("timeout", self.timeout)
        try:
            return self.session(node).request(method, node.url + path, **kw)
        except requests.RequestException as exc:
            raise PeerUnavailable(node, type(exc).__name__) from None

    def close(self):
        with self._lock:
            sessions, self._sessions = self._sessions, {}
        for s in sessions.values():
            s.close()
