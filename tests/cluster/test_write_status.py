"""A valid write or read of an existing bucket is answered 200 or a retryable 503 under
faults, never a 404 or 400 (docs/consistency.md): a peer whose bucket table is not current
yet, an object replaced by a newer delete while its copies are made, holders that cannot be
asked, etcd away from a node that has not loaded its bucket table. The cluster store runs
in the test (as node `me`) against a real peer serving HTTP (tests/cluster/inproc.py) whose
bucket table lacks the bucket, as a node's does when it started or joined while etcd was
away."""
import io
import socket

import pytest

from getbatch.cluster.buckets import BucketMeta, BucketTable
from getbatch.cluster.etcd import Etcd
from getbatch.cluster.peers import Peers
from getbatch.cluster.share import LocalShare
from getbatch.cluster.smap import NodeInfo, Smap
from getbatch.cluster.store import ClusterStore
from getbatch.store import LocalStore
from getbatch.store.stamps import Clock
from getbatch.store.errors import ObjectNotFound, Unavailable

from .inproc import SECRET, MiniCluster


class _Table:
    """This node's bucket table: `fresh` exists, with `copies` copies."""

    def __init__(self, copies):
        self.meta = BucketMeta("fresh", "ais", {"mirror": {"enabled": True, "copies": copies}},
                               1)

    def get(self, name):
        return self.meta if name == "fresh" else None

    def require(self, name):
        return self.meta

    current = require


class _Me:
    """What ClusterStore takes of its node's Cluster: the map and a fresh lease."""

    def __init__(self, smap, secret=SECRET["Getbatch-Cluster-Secret"]):
        self.smap = smap
        self.node = smap.node(smap.self_id)
        self.peers = Peers(secret)

    def lease_fresh(self):
        return True


def _dead_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture(scope="module")
def peer(tmp_path_factory):
    mini = MiniCluster(tmp_path_factory.mktemp("status"), n=1)   # its table: no buckets
    yield mini.nodes[0]
    mini.stop()


def _store(tmp_path, others, copies=2, **me):
    node = NodeInfo("me", "http://127.0.0.1:9")   # never dialled: this process is `me`
    smap = Smap(1, [node, *others], "me")
    table = _Table(copies)
    local = LocalStore(tmp_path / "me")
    local.clock = Clock("me")   # stamps, as on a cluster node
    return ClusterStore(_Me(smap, **me), LocalShare(local, table), table)


def _first_owned_by(store, node_id):
    return next(n for n in (f"o{i}" for i in range(100))
                if store.cluster.smap.owners("ais", "fresh", n)[0].id == node_id)


@pytest.mark.parametrize("first", ["peer", "me"])
def test_put_a_peer_refuses_is_a_503(tmp_path, peer, first):
    store = _store(tmp_path, [NodeInfo(peer.id, peer.url)])
    name = _first_owned_by(store, peer.id if first == "peer" else "me")
    # the peer reads the body before it answers: a 503 saying which node could not take it
    with pytest.raises(Unavailable, match="could not take|reached 1 of the 2"):
        store.put("fresh", name, io.BytesIO(b"x" * 1000), 1000)


@pytest.mark.parametrize("first", ["peer", "me"])
def test_put_a_peer_refuses_this_node_is_a_503(tmp_path, peer, first):
    """A peer refusing this node (403: another cluster secret) is not the client's fault:
    a 503 naming the node (not the 400 a peer's unexplained 4xx is elsewhere)."""
    store = _store(tmp_path, [NodeInfo(peer.id, peer.url)], secret="not-the-cluster's")
    name = _first_owned_by(store, peer.id if first == "peer" else "me")
    with pytest.raises(Unavailable, match=f"node {peer.id} could not take|reached 1 of the 2"):
        store.put("fresh", name, io.BytesIO(b"x" * 1000), 1000)


def test_put_with_fewer_live_nodes_than_copies_is_a_503_naming_them(tmp_path):
    """A map smaller than the bucket's copies (etcd paused past the lease shrinks it to this
    node): the PUT is refused, naming how many nodes were reachable, and nothing is stored."""
    store = _store(tmp_path, [], copies=2)
    with pytest.raises(Unavailable, match="1 distinct live nodes reachable, 2 needed"):
        store.put("fresh", "o1", io.BytesIO(b"x" * 1000), 1000)
    assert not [p for p in (tmp_path / "me").rglob("o1")]


def test_writes_without_a_fresh_lease_are_503s(tmp_path):
    """A node whose etcd lease was not confirmed within the TTL (etcd away, the node paused)
    takes no PUT or DELETE: a 503 saying why, and nothing is stored."""
    store = _store(tmp_path, [], copies=1)
    store.cluster.lease_fresh = lambda: False
    with pytest.raises(Unavailable, match="node me cannot accept writes now"):
        store.put("fresh", "o1", io.BytesIO(b"x" * 1000), 1000)
    with pytest.raises(Unavailable, match="node me cannot accept writes now"):
        store.delete("fresh", "o1")
    assert not [p for p in (tmp_path / "me").rglob("o1")]


def test_delete_a_peer_refuses_is_a_503(tmp_path, peer):
    store = _store(tmp_path, [NodeInfo(peer.id, peer.url)])
    name = _first_owned_by(store, peer.id)
    with pytest.raises(Unavailable, match="reached 1 of the 2"):
        store.delete("fresh", name)


def test_copy_of_a_version_deleted_meanwhile_is_a_503(tmp_path, peer):
    store = _store(tmp_path, [NodeInfo(peer.id, peer.url)])
    with pytest.raises(Unavailable, match="deleted while its copies were being made"):
        store.push("fresh", "gone", [peer.id], 1)


def test_delete_with_a_node_away_is_not_a_404(tmp_path):
    """A node that did not answer may hold the object: the delete stands (its tombstone on
    enough nodes), it is not answered "no such object"."""
    store = _store(tmp_path, [NodeInfo("away", _dead_url())], copies=1)
    store.delete("fresh", _first_owned_by(store, "me"))
    alone = _store(tmp_path / "alone", [], copies=1)
    with pytest.raises(ObjectNotFound):
        alone.delete("fresh", "never")


def test_get_with_every_possible_holder_away_is_a_503(tmp_path):
    store = _store(tmp_path, [NodeInfo("away", _dead_url())], copies=1)
    with pytest.raises(Unavailable, match="could not be asked"):
        store.stat("fresh", "x")
    store.share.put("fresh", "x", io.BytesIO(b"here"), 4)
    assert store.stat("fresh", "x").size == 4


def test_get_from_a_peer_refusing_this_node_is_a_503(tmp_path, peer):
    """A holder that refuses this node (403: another cluster secret) could not be asked,
    as one away: a 503, not the 400 of a peer's unexplained 4xx."""
    store = _store(tmp_path, [NodeInfo(peer.id, peer.url)], copies=1,
                   secret="not-the-cluster's")
    with pytest.raises(Unavailable, match=f"peer {peer.id} refused this node: 403"):
        store.stat("fresh", _first_owned_by(store, peer.id))


def test_bucket_unknown_here_while_etcd_is_away_is_a_503():
    table = BucketTable(Etcd([_dead_url()], timeout=(0.5, 0.5)))
    with pytest.raises(Unavailable, match="bucket metadata unavailable"):
        table.require("b")
    assert table.get("b") is None


def test_getbatch_versions_none_answered_is_a_503_naming_what_failed(tmp_path):
    """A GetBatch's states round (cluster/versions.py) where every compared holder of an
    entry fails, one with its own 500, one with an answer that is no list of states (once
    compared with another holder's stamp, a TypeError: a 500 for the client): a 503 naming
    each and what it answered."""
    import json
    from types import SimpleNamespace

    import msgpack

    from getbatch.cluster.versions import newest_holders

    from .inproc import HostilePeer
    said = json.dumps({"message": "boom", "status": 500}).encode()
    nonsense = msgpack.packb([[1, 2]])
    evil = [HostilePeer(lambda body: b"HTTP/1.1 500 Oops\r\nContent-Length: %d\r\n\r\n%s"
                        % (len(said), said)),
            HostilePeer(lambda body: b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                        % (len(nonsense), nonsense))]
    try:
        store = _store(tmp_path, [NodeInfo("e500", evil[0].url), NodeInfo("e200", evil[1].url)])
        name = next(n for n in (f"o{i}" for i in range(100))
                    if {o.id for o in store.cluster.smap.owners("ais", "fresh", n, 2)}
                    == {"e500", "e200"})
        with pytest.raises(Unavailable) as got:
            newest_holders(store, store.cluster.smap,
                           [SimpleNamespace(provider="ais", bucket="fresh", objname=name)])
        msg = str(got.value)
        assert "peer e500: 500 boom" in msg and "peer e200: its answer" in msg, msg
    finally:
        for e in evil:
            e.close()
