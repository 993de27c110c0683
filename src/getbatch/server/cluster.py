"""The cluster-map and health endpoints the SDK uses for `is_ready()` and direct reads, and the
guard of intra-cluster endpoints.

A single node is proxy and target at once; its own URL is taken from the request. On a cluster
every live node is both too, and the map is the node's cached `Smap` (no etcd round trip).
"""
import time
import zlib
from urllib.parse import urlsplit

import msgpack
import msgspec

from ..cluster.catchup import catch_up, stamps_page
from ..cluster.peers import PEER_PREFIX, SECRET_HEADER, PeerUnavailable, secret_ok
from ..cluster.rebalance import DEFAULT_RATE
from ..cluster.versions import local_state
from ..store.names import validate_bucket_name
from .errors import AISError
from ..tls import CLIENT_CERT

_enc = msgspec.json.Encoder()
_started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _snode(node_id, kind, url):
    u = urlsplit(url)
    return {"daemon_id": node_id, "daemon_type": kind,
            "public_net": {"node_hostname": u.hostname or "", "daemon_port": str(u.port or ""),
                           "direct_url": url},
            "flags": 0, "id_digest": zlib.crc32(node_id.encode())}


def require_secret(req, cluster):
    """Refuse (403) a request to an intra-cluster endpoint without the cluster's secret, and,
    on a node with a CA for its peers (tls_ca), without a client certificate it verified."""
    if cluster is None or not secret_ok(cluster.secret, req.get_header(SECRET_HEADER)):
        raise AISError(403, f"{req.method} {req.path} is an intra-cluster endpoint: "
                            "only nodes of the cluster may call it")
    peer_tls = getattr(cluster, "peer_tls", None)
    if peer_tls is not None and peer_tls.ca and not req.env.get(CLIENT_CERT):
        raise AISError(403, f"{req.method} {req.path} is an intra-cluster endpoint: a peer "
                            "must show a client certificate signed by the cluster's CA (tls_ca)")


class Daemon:
    """GET /v1/daemon?what=smap."""

    def __init__(self, node_id, cluster=None):
        self.node_id = node_id
        self.cluster = cluster

    def on_get(self, req, resp):
        what = req.get_param("what")
        if what != "smap":
            raise AISError(400, f'unsupported daemon query what="{what}" (supported: smap)')
        if self.cluster is None:
            nodes, me, version = [(self.node_id, req.prefix)], self.node_id, 1
            uuid, created = "getbatch-single-node", _started
        else:
            smap = self.cluster.smap
            nodes = [(n.id, n.url) for n in smap.nodes]
            me = self.cluster.node.id
            if smap.node(me) is None:  # not (yet, or no longer) registered: still answer as self
                nodes.append((me, self.cluster.node.url))
            version, uuid, created = smap.version or 1, self.cluster.uuid, self.cluster.created
        urls = dict(nodes)
        resp.content_type = "application/json"
        resp.data = _enc.encode({
            "tmap": {i: _snode(i, "target", u) for i, u in nodes},
            "pmap": {i: _snode(i, "proxy", u) for i, u in nodes},
            "proxy_si": _snode(me, "proxy", urls[me]),
            "version": version, "uuid": uuid, "creation_time": created})


class Health:
    """GET /v1/health: 200 once the process serves requests (liveness). With `readiness=true`
    (AIS's query), on a cluster: 200 only while this node is in the cluster map it holds,
    else 503 (a load balancer or Kubernetes then sends it no clients)."""

    def __init__(self, cluster=None):
        self.cluster = cluster

    def on_get(self, req, resp):
        if (self.cluster is not None and req.get_param_as_bool("readiness", default=False)
                and self.cluster.smap.node(self.cluster.node.id) is None):
            raise AISError(503, f"node {self.cluster.node.id} is not in the cluster map "
                                "(joining, or its etcd lease lapsed)")
        resp.status = 200


class PeerGuard:
    """Falcon middleware: every path under the intra-cluster prefix needs the secret, whatever
    resource serves it (so a new intra-cluster endpoint cannot forget the check)."""

    def __init__(self, cluster):
        self.cluster = cluster

    def process_request(self, req, resp):
        if req.path.startswith(PEER_PREFIX + "/"):
            require_secret(req, self.cluster)


class PeerPing:
    """GET /v1/_peer/ping: this node's id and map version, for peers (and tests) to check."""

    def __init__(self, cluster):
        self.cluster = cluster

    def on_get(self, req, resp):
        resp.content_type = "application/json"
        resp.data = _enc.encode({"id": self.cluster.node.id,
                                 "smap_version": self.cluster.smap.version})


class PeerPush:
    """POST /v1/_peer/push/<bucket>/<object>?to=<ids>&copies=<n>[&required=false]: copy this
    node's object to `copies` of the nodes `to` (in order, skipping unreachable ones): the
    second half of a PUT that another node forwarded here (503 when fewer were reached,
    unless not `required`: a repair)."""

    def __init__(self, cluster):
        self.cluster = cluster

    def on_post(self, req, resp, bucket, obj):
        to = [i for i in (req.get_param("to") or "").split(",") if i]
        copies = req.get_param_as_int("copies", min_value=0, default=len(to))
        made = self.cluster.store.push(bucket, obj, to, copies,
                                       req.get_param_as_bool("required", default=True))
        resp.content_type = "application/json"
        resp.data = _enc.encode({"copies": made})


class PeerStamps:
    """GET /v1/_peer/stamps/<bucket>?after=<name>&limit=<n>: one page of this node's stamps
    of the bucket, objects and tombstones in name order (msgpack {"entries": [[name, stamp,
    is_tomb]], "next": name to go on after, "" on the last page}): what a returning peer
    catches up from (cluster/catchup.py). `for=<id>`: the asking node; 503 while this node's
    map does not have it as a write target yet."""

    def __init__(self, cluster):
        self.cluster = cluster

    def on_get(self, req, resp, bucket):
        validate_bucket_name(bucket)
        asker = req.get_param("for")
        if asker and self.cluster.smap.target(asker) is None:
            # until this node sends the asker its writes, what it lists may miss one
            raise AISError(503, f"node {asker} is not in node {self.cluster.node.id}'s map "
                                "yet; ask again in a moment")
        rows, nxt = stamps_page(self.cluster.share, bucket, req.get_param("after") or "",
                                req.get_param_as_int("limit", min_value=1, max_value=10_000,
                                                     default=1000))
        resp.content_type = "application/msgpack"
        resp.data = msgpack.packb({"entries": rows, "next": nxt})


class PeerStates:
    """POST /v1/_peer/states, body msgpack [[bucket, name]]: this node's [stamp, is_tomb] of
    each name, null where it has neither (msgpack): what a cluster GetBatch compares across
    the holders of its entries (cluster/versions.py)."""

    def __init__(self, cluster):
        self.cluster = cluster

    def on_post(self, req, resp):
        try:
            pairs = msgpack.unpackb(req.bounded_stream.read())
            if not isinstance(pairs, list):
                raise ValueError("not a list")
            states = [local_state(self.cluster.share, b, n) for b, n in pairs]
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise AISError(400, f"bad states request: {exc}") from None
        resp.content_type = "application/msgpack"
        resp.data = msgpack.packb(states)


class PeerCatchUp:
    """POST /v1/_peer/catchup: this node catches up with its peers now (its registrar calls
    it before registering); the counts of what it took."""

    def __init__(self, cluster):
        self.cluster = cluster

    def on_post(self, req, resp):
        resp.content_type = "application/json"
        resp.data = _enc.encode(catch_up(self.cluster.store))


class PeerRebalance:
    """/v1/_peer/rebalance: POST starts this node's part of a rebalance, GET its progress,
    DELETE stops it."""

    def __init__(self, rebalance):
        self.rebalance = rebalance

    def on_post(self, req, resp):
        rate = req.get_param_as_int("rate", min_value=0, default=DEFAULT_RATE)
        resp.content_type = "application/json"
        resp.data = _enc.encode({"started": self.rebalance.start(rate)})

    def on_get(self, req, resp):
        resp.content_type = "application/json"
        resp.data = _enc.encode(self.rebalance.status())

    def on_delete(self, req, resp):
        resp.content_type = "application/json"
        resp.data = _enc.encode({"stopped": self.rebalance.stop()})


class RebalanceAPI:
    """/v1/rebalance: POST starts a rebalance on every live node (`?rate=` objects per second
    per node), GET reports every node's progress and an overall `state`, DELETE stops it on
    every node."""

    def __init__(self, cluster, rebalance):
        self.cluster = cluster
        self.rebalance = rebalance

    def _each(self, method, params=None):
        out = {}
        for node in self.cluster.smap.nodes:
            if node.id == self.cluster.node.id:
                out[node.id] = (self.rebalance.status() if method == "GET" else
                                {"stopped": self.rebalance.stop()} if method == "DELETE" else
                                {"started": self.rebalance.start(params["rate"])})
                continue
            try:
                r = self.cluster.peers.request(node, method, PEER_PREFIX + "/rebalance",
                                               params=params, timeout=10)
                out[node.id] = r.json()
            except (PeerUnavailable, ValueError) as exc:
                out[node.id] = {"state": "unreachable", "error": str(exc)}
        return out

    def on_post(self, req, resp):
        rate = req.get_param_as_int("rate", min_value=0, default=DEFAULT_RATE)
        resp.content_type = "application/json"
        resp.data = _enc.encode({"nodes": self._each("POST", {"rate": rate})})

    def on_delete(self, req, resp):
        resp.content_type = "application/json"
        resp.data = _enc.encode({"nodes": self._each("DELETE")})

    def on_get(self, req, resp):
        nodes = self._each("GET")
        states = {st.get("state") for st in nodes.values()}
        state = ("running" if "running" in states else
                 "done" if states == {"done"} else "incomplete")
        resp.content_type = "application/json"
        resp.data = _enc.encode({"state": state, "nodes": nodes,
                                 "moved": sum(st.get("moved", 0) for st in nodes.values()),
                                 "copied": sum(st.get("copied", 0) for st in nodes.values())})
