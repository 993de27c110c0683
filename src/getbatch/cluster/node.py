"""A node's view of its cluster: who it is, the cluster secret, the live map, its peers.

`Cluster.boot(config)` runs once in the serving (arbiter) process before any worker starts: it
settles the node id, reads (or creates) the cluster identity in etcd and takes a first map.
`registrar()` is then started in that same process (it holds the lease). Each worker process
calls `start(storage)` after the fork: its own etcd client, its own watches of membership and
bucket metadata (threads and connections do not survive a fork), its own peer client; it
returns the storage the node serves, whose `ais` backend is the cluster's (`ClusterStore`).
"""
import json
import logging
import os
import time

from .. import tls
from ..store.router import Storage
from ..store.stamps import Clock
from .buckets import BucketTable
from .etcd import Etcd, EtcdUnavailable
from .membership import (LEASE_TTL, NODES, PrefixWatcher, Registrar, cluster_identity,
                         lease_fresh, smap_builder, stable_node_id)
from .peers import PEER_PREFIX, PeerUnavailable, Peers
from .smap import NodeInfo
from .share import LocalShare
from .store import ClusterStore

log = logging.getLogger("getbatch.cluster")

BOOT_WAIT = 10.0     # seconds `serve` waits for etcd before giving up
CATCH_UP_WAIT = 60.0       # seconds the registrar waits for a worker to take the catch-up
CATCH_UP_TIMEOUT = 3600.0  # seconds a catch-up may take (one listing of each peer's share)


class CatchUpFailed(Exception):
    """A worker answered the catch-up with an error: the node does not register yet."""


def advertise_url(config):
    """The URL peers and clients reach this node at: `advertise`, or http(s)://host:port when
    the node listens on one address (https when it serves TLS)."""
    if config.advertise:
        return config.advertise.rstrip("/")
    scheme = "https" if config.tls_cert else "http"
    if config.host in ("0.0.0.0", "::", ""):
        raise ValueError(f"host {config.host} listens on every address: set advertise "
                         f"(--advertise {scheme}://HOST:PORT) to the URL other nodes reach this "
                         "one at")
    host = f"[{config.host}]" if ":" in config.host else config.host
    return f"{scheme}://{host}:{config.port}"


class DuplicateNode(ValueError):
    """Another live node of the cluster has this node's id or advertise URL."""


def check_unique(kvs, node):
    """DuplicateNode when a live node in `kvs` (the node keys) has `node`'s id with another
    URL, or its URL with another id (the same id and URL is this node's own earlier run)."""
    for kv in kvs:
        try:
            d = json.loads(kv.value)
        except ValueError:
            continue
        if d.get("id") == node.id and d.get("url", "").rstrip("/") != node.url:
            return DuplicateNode(f"node id {node.id} is already live in the cluster at "
                                 f"{d.get('url')}: this data dir belongs to that node (give "
                                 "this one its own data dir, or stop the other first)")
        if d.get("url", "").rstrip("/") == node.url and d.get("id") != node.id:
            return DuplicateNode(f"advertise URL {node.url} is already live in the cluster as "
                                 f"node {d.get('id')}: each node needs its own --advertise URL")
    return None


class Cluster:
    def __init__(self, endpoints, node, ident, smap, etcd_tls=None, peer_tls=None,
                 data_dir="."):
        """`etcd_tls`, `peer_tls`: getbatch.tls.ClientTLS towards etcd and the peers."""
        self.endpoints = list(endpoints)
        self.etcd_tls = etcd_tls
        self.peer_tls = peer_tls
        self.node = node
        self.lease_path = os.path.join(data_dir, ".sys", "lease")
        self.uuid = ident["uuid"]
        self.secret = ident["secret"]
        self.created = ident["created"]
        self._boot_smap = smap
        self.etcd = None
        self.peers = None   # the node's peer client (control calls and sub-batch streams)
        self.share = None   # this node's LocalShare (what peers reach)
        self.store = None   # the ClusterStore (the `ais` backend clients reach)
        self._watcher = None

    @classmethod
    def boot(cls, config, wait=BOOT_WAIT):
        """Settle id and URL, read the cluster identity and a first map (retrying etcd for up
        to `wait` seconds; then EtcdUnavailable). ValueError for a bad advertise/host pair."""
        node_id = (config.node_id if config.origin("node_id") != "default"
                   else stable_node_id(os.path.abspath(config.data_dir)))
        node = NodeInfo(node_id, advertise_url(config))
        etcd_tls = tls.etcd_client(config)
        etcd = Etcd(config.etcd, tls=etcd_tls)
        deadline = time.monotonic() + wait
        # a node refused for a duplicate id or URL waits out the other's lease first (it may
        # be this machine's previous node, killed a moment ago)
        dup_deadline = time.monotonic() + LEASE_TTL + 1
        while True:
            try:
                ident = cluster_identity(etcd)
                kvs, revision = etcd.range(NODES)
                dup = check_unique(kvs, node)
                if dup is None:
                    break
                if time.monotonic() > dup_deadline:
                    raise dup
                time.sleep(0.5)
            except EtcdUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        smap = smap_builder(node_id)({kv.key: kv for kv in kvs}, revision)
        etcd.close()
        return cls(config.etcd, node, ident, smap, etcd_tls, tls.peer_client(config),
                   os.path.abspath(config.data_dir))

    def registrar(self, catch_up=None):
        """The lease holder of this node (start it in the process that outlives the workers);
        `catch_up`: see Registrar."""
        return Registrar(self._etcd(), self.node, lease_path=self.lease_path,
                         catch_up=catch_up)

    def lease_fresh(self):
        """True when this node's membership lease was confirmed lately (writes need it)."""
        return lease_fresh(self.lease_path)

    def catch_up_self(self, wait=CATCH_UP_WAIT):
        """Have a worker of this node catch up with its peers (catchup.py), waiting for one
        to answer for up to `wait` seconds (the registrar calls this while the node is
        joining, possibly before the workers are up). Raises PeerUnavailable or
        CatchUpFailed."""
        peers = Peers(self.secret, tls=self.peer_tls)
        deadline = time.monotonic() + wait
        try:
            while True:
                try:
                    r = peers.request(self.node, "POST", PEER_PREFIX + "/catchup",
                                      timeout=CATCH_UP_TIMEOUT)
                    break
                except PeerUnavailable:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
        finally:
            peers.close()
        if r.status_code != 200:
            raise CatchUpFailed(f"node {self.node.id} could not catch up with its peers: "
                                f"{r.status_code} {r.text[:200]}")

    def start(self, storage):
        """In a worker: watch membership and buckets, make the peer client; the Storage to
        serve (`storage` with its `ais` backend placed over the cluster)."""
        self.etcd = self._etcd()
        self.peers = Peers(self.secret, tls=self.peer_tls)
        storage.backends["ais"].clock = Clock(self.node.id)
        self._watcher = PrefixWatcher(self.etcd, NODES, smap_builder(self.node.id),
                                      initial=self._boot_smap)
        try:
            self._watcher.sync()
        except EtcdUnavailable as exc:
            log.warning("worker starts with the membership known at boot: %s", exc)
        self._watcher.start()
        buckets = BucketTable(self.etcd, on_gone=lambda *a: self.share.bucket_gone(*a))
        self.share = LocalShare(storage.backends["ais"], buckets)
        buckets.start()
        self.store = ClusterStore(self, self.share, buckets)
        return Storage(dict(storage.backends, ais=self.store))

    def _etcd(self):
        return Etcd(self.endpoints, tls=self.etcd_tls)

    @property
    def smap(self):
        """The current cluster map (an immutable Smap; take it once per request)."""
        return self._watcher.value if self._watcher is not None else self._boot_smap
