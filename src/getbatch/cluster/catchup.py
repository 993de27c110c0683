"""Catch-up: a node that was away learns what it missed before it is in the map again.

Before every registration (at boot, and after its lease was lost: a pause, etcd away), the
node's registrar asks one of its own workers to catch up (POST /v1/_peer/catchup) and
registers only once that is done. The worker:
1. drops its local copy of every bucket destroyed while the node was away, or destroyed and
   made again (the bucket's etcd create revision differs from the one recorded locally);
2. pages through every live peer's stamps of each bucket it holds (GET
   /v1/_peer/stamps/<bucket>: names, stamps, tombstones in name order) and, for each name it
   holds itself (an object or a tombstone), takes the peer's version when it is newer: the
   copy, or the delete.
Names it does not hold are not its business: reads compare the owners' stamps and repair,
rebalance fills missing copies. The cost is one listing of each peer's share of each bucket
held here (bench/RESULTS-cluster.md).
"""
import logging
import time


from ..store.errors import BucketNotFound, ObjectNotFound, Unavailable
from .buckets import read_table
from .peers import PeerUnavailable
from .store import SourceStream

log = logging.getLogger("getbatch.cluster")

PAGE = 1000
SEEN_WAIT = 15.0  # seconds a peer may take to see this node joining (its etcd watch)


def bucket_gone(local, name, meta):
    """True when the local copy of bucket `name` is not of the bucket `meta` (a BucketMeta,
    None when the cluster has no such bucket) describes."""
    if meta is None:
        return True
    mine = local.bucket_id(name)
    return bool(mine and meta.create_revision and mine != str(meta.create_revision))


def stamps_page(share, bucket, after, limit=PAGE):
    """One page of this node's stamps of `bucket` after name `after`: ([[name, stamp,
    is_tomb]] in name order, the name to go on after or "")."""
    local = share.local
    try:
        objects, nxt = local.list_objects(bucket, token=after, page_size=limit, with_meta=True)
    except BucketNotFound:
        return [], ""
    rows = [[a.name, a.stamp, False] for a in objects]
    rows += [[n, s, True] for n, s in local.tombs.items(bucket)
             if n > after and (not nxt or n <= nxt)]
    rows.sort()
    return rows, nxt


def catch_up(store):
    """Bring this node's copies up to its live peers' newest versions (see the module
    docstring); {"buckets_dropped", "copies_taken", "deletes_taken", "errors"}."""
    cluster = store.cluster
    local = store.share.local
    me = cluster.node.id
    st = {"buckets_dropped": 0, "copies_taken": 0, "deletes_taken": 0, "errors": 0}
    table = read_table(store.buckets.etcd)
    for name in local.list_buckets():
        if bucket_gone(local, name, table.get(name)):
            log.warning("bucket ais://%s was destroyed while this node was away: removing its "
                        "local copy", name)
            store.share.destroy_bucket(name)
            st["buckets_dropped"] += 1
    peers = [n for n in cluster.smap.nodes if n.id != me]
    for bucket in local.list_buckets():
        for node in peers:
            try:
                _from_peer(store, node, bucket, st)
            except Exception as exc:  # a peer's bad answer must not keep this node out
                st["errors"] += 1
                log.warning("catch-up of ais://%s from node %s: %s (reads and rebalance "
                            "repair what is left)", bucket, node.id, exc)
    log.info("caught up with %d peers: %s", len(peers), st)
    return st


def _first_page(backend, bucket, me):
    """The peer's first page, once the peer sees this node as a write target: a write it
    acknowledges from then on reaches this node, one it acknowledged before is in its pages."""
    deadline = time.monotonic() + SEEN_WAIT
    while True:
        try:
            return backend.stamps_page(bucket, "", PAGE, me)
        except PeerUnavailable:
            raise
        except Unavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _from_peer(store, node, bucket, st):
    local = store.share.local
    backend = store.backend_of(node)
    after = ""
    page = _first_page(backend, bucket, store.cluster.node.id)
    while True:
        if after:
            page = backend.stamps_page(bucket, after, PAGE, store.cluster.node.id)
        if page is None:
            return
        for name, stamp, tomb in page["entries"]:
            mine = local.current_stamp(bucket, name)
            if mine is None or stamp <= mine:
                continue  # not held here, or not newer
            if tomb:
                local.delete(bucket, name, stamp, keep=True)
                st["deletes_taken"] += 1
                continue
            try:
                src, attrs = backend.open(bucket, name)
            except ObjectNotFound:
                continue  # replaced or deleted meanwhile: the next pass sees the newer one
            with src:
                local.put(bucket, name, SourceStream(src), attrs.size, attrs.stamp)
            st["copies_taken"] += 1
        after = page["next"]
        if not after:
            return
