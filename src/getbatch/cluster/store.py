"""The `ais` backend of a cluster node: HRW placement over the local store and its peers.

- `LocalShare` (share.py) is this node's share of the cluster's buckets; peers reach it
  through the intra-cluster endpoints (`/v1/_peer/objects/...`, `/v1/_peer/buckets/...`).
- `PeerBackend` (peer_backend.py) is one peer seen as a backend: the same operations over
  HTTP, against that peer's `LocalShare`.
- `ClusterStore` is what the server and GetBatch planning see as `ais`: for each object it
  ranks the live nodes by HRW and uses the local share or the peer backend. PUT stores the
  object on the top-`copies` nodes (each copy atomic) before it returns; reads try the ranked
  nodes in turn, so an object written before a membership change is still found (lazy
  placement, until `rebalance` moves it); DELETE removes every copy; listing merges every
  node's pages. A file inside a shard is read where the shard is (a peer streams it), and a
  listing with shards expanded has each node expand its own: shards do not cross the network.
"""
import heapq
import logging
import os
from concurrent.futures import ThreadPoolExecutor

from ..archive import open_shard
from ..store.archived import archive_splits
from ..store.archlist import IN_ARCHIVE, IS_ARCHIVE, SEP
from ..store.backend import MAX_PAGE, Backend
from ..store.errors import BucketNotFound, ObjectNotFound, StoreError, Unavailable
from ..store.names import validate_bucket_name, validate_object_name
from .peer_backend import Body, PeerBackend
from .peers import PeerUnavailable
from .smap import placement_key

log = logging.getLogger("getbatch.cluster")

_CHUNK = 1 << 20


class ClusterStore(Backend):
    """The `ais` backend on a cluster node (see the module docstring)."""

    provider = "ais"

    def __init__(self, cluster, share, buckets):
        self.cluster = cluster
        self.share = share
        self.buckets = buckets
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="fanout")

    # ---- placement
    def _ranked(self, bucket, name):
        """[(NodeInfo, backend)] of every live node, HRW order for the object. This node is
        in it even when not (yet) in the map, last, so its own copy is always looked at."""
        smap = self.cluster.smap
        me = self.cluster.node
        nodes = smap.ranked(placement_key("ais", bucket, name))
        if smap.node(me.id) is None:
            nodes.append(me)
        return [(n, self._backend_of(n)) for n in nodes]

    def _backend_of(self, node):
        if node.id == self.cluster.node.id:
            return self.share
        return PeerBackend(self.cluster.peers, node)

    def _everyone(self):
        smap = self.cluster.smap
        nodes = list(smap.nodes)
        if smap.node(self.cluster.node.id) is None:
            nodes.append(self.cluster.node)
        return [(n, self._backend_of(n)) for n in nodes]

    def _fanout(self, fn, targets):
        """fn(node, backend) on every target in parallel; [(node, result or exception)]."""
        def run(t):
            try:
                return t[0], fn(*t)
            except Exception as exc:
                return t[0], exc
        return list(self._pool.map(run, targets))

    # ---- buckets
    def list_buckets(self):
        return self.buckets.names()

    def has_bucket(self, name):
        try:
            validate_bucket_name(name)
        except StoreError:
            return False
        return self.buckets.get(name) is not None

    def create_bucket(self, name):
        validate_bucket_name(name)
        self.buckets.create(name)

    def destroy_bucket(self, name):
        validate_bucket_name(name)
        self.buckets.destroy(name)
        # every live node drops its copy now (a node away meanwhile drops it when it boots)
        for node, res in self._fanout(lambda n, b: b.destroy_bucket(name), self._everyone()):
            if isinstance(res, Exception):
                log.warning("bucket ais://%s destroyed, but node %s kept its copy for now: %s",
                            name, node.id, res)

    def bucket_props(self, name):
        meta = self.buckets.require(name)
        return {"provider": "ais", "created": meta.props.get("created", ""),
                "mirror": meta.props.get("mirror") or {"enabled": False, "copies": 1},
                "version": str(meta.revision)}

    def set_bucket_props(self, name, props):
        from .buckets import check_mirror
        unknown = set(props) - {"mirror"}
        if unknown:
            raise StoreError(f"bucket property {sorted(unknown)[0]!r} cannot be set here "
                             "(supported: mirror)")
        self.buckets.require(name)
        self.buckets.set_props(name, {"mirror": check_mirror(props["mirror"])})

    def _copies(self, bucket):
        """Copies a write makes: from etcd's current bucket properties (one round trip per
        write; reads never pay it)."""
        return self.buckets.current(bucket).copies

    # ---- reads: the ranked nodes in turn
    def _find(self, bucket, name, fn):
        self.buckets.require(bucket)
        validate_object_name(name)
        unreachable = []
        for node, backend in self._ranked(bucket, name):
            try:
                return fn(backend)
            except ObjectNotFound:
                continue
            except Unavailable as exc:
                unreachable.append(str(exc))
        if unreachable:
            log.info("ais://%s/%s not found on the reachable nodes; unreachable: %s", bucket,
                     name, "; ".join(unreachable))
        raise ObjectNotFound(bucket, name)

    def stat(self, bucket, name):
        return self._find(bucket, name, lambda b: b.stat(bucket, name))

    def open(self, bucket, name):
        return self._find(bucket, name, lambda b: b.open(bucket, name))

    def open_archived(self, bucket, name, archpath, budget=None):
        """A file inside a shard, read where the shard is: here, or streamed from the peer
        that holds it (its answer to GET ?archpath=, which checks its own max_inflate)."""
        return self._find(bucket, name, lambda b: b.open_archived(bucket, name, archpath,
                                                                  budget))

    def stat_archived(self, bucket, name, archpath, budget=None):
        return self._find(bucket, name, lambda b: b.stat_archived(bucket, name, archpath,
                                                                  budget))

    def open_shard(self, bucket, name, budget=None):
        """The shard here when this node holds it, else a copy of a peer's in an unlinked
        local temp file (the whole shard crosses the network: the object API and listings
        use open_archived and list_expanded instead, which leave it where it is)."""
        try:
            return self.share.open_shard(bucket, name, budget)
        except (ObjectNotFound, BucketNotFound):
            pass

        def fetch(b):
            src, _ = b.open(bucket, name)
            with src:
                fd = fetch_to_scratch(src, self.share.local)
            return open_shard(fd, name=name, budget=budget)
        return self._find(bucket, name, fetch)

    # ---- writes
    def put(self, bucket, name, stream, length=None):
        """Store on the top-`copies` nodes before returning: the first reachable owner
        receives the body (here, or forwarded), then copies it to the others. The attrs when
        stored here, None when stored on peers (the server does not use them)."""
        copies = self._copies(bucket)
        validate_object_name(name)
        ranked = self._ranked(bucket, name)
        body = Body(stream, length)
        for node, backend in ranked:
            others = [n.id for n, _ in ranked if n.id != node.id]
            try:
                if backend is self.share:
                    attrs = self.share.put(bucket, name, body, length)
                    self.push(bucket, name, others, copies - 1)
                    return attrs
                backend.put(bucket, name, body, length)
            except PeerUnavailable:
                if body.consumed:
                    raise Unavailable(f"node {node.id} went away while receiving "
                                      f"ais://{bucket}/{name}; try again") from None
                continue
            if copies > 1:
                self._require_copies(bucket, name, 1 + backend.push(bucket, name, others,
                                                                    copies - 1), copies)
            return None
        raise Unavailable(f"no node could store ais://{bucket}/{name}")

    def push(self, bucket, name, candidates, wanted):
        """Copy the local object to `wanted` of `candidates` (node ids, in order), skipping
        those that cannot be reached; how many copies were made."""
        if wanted <= 0:
            return 0
        smap = self.cluster.smap
        made = 0
        for node_id in candidates:
            node = smap.node(node_id)
            if node is None or node_id == self.cluster.node.id:
                continue
            try:
                src, attrs = self.share.open(bucket, name)
                with src:
                    PeerBackend(self.cluster.peers, node).put(bucket, name, _SourceStream(src),
                                                              attrs.size)
                made += 1
            except Unavailable as exc:
                log.warning("copy of ais://%s/%s to %s failed: %s", bucket, name, node_id, exc)
                continue
            if made == wanted:
                break
        self._require_copies(bucket, name, 1 + made, 1 + wanted)
        return made

    def _require_copies(self, bucket, name, have, want):
        want = min(want, len(self.cluster.smap) or 1)
        if have < want:
            raise Unavailable(f"ais://{bucket}/{name} stored on {have} of {want} nodes "
                              "(too few nodes reachable); try again")

    def append(self, bucket, name, handle, stream, length=None):
        """Appends go to the first owner, which holds the session."""
        self.buckets.require(bucket)
        node, backend = self._ranked(bucket, name)[0]
        return backend.append(bucket, name, handle, stream, length)

    def flush(self, bucket, name, handle):
        copies = self._copies(bucket)
        ranked = self._ranked(bucket, name)
        node, backend = ranked[0]
        attrs = backend.flush(bucket, name, handle)
        if copies > 1:
            others = [n.id for n, _ in ranked[1:]]
            if backend is self.share:
                self.push(bucket, name, others, copies - 1)
            else:
                self._require_copies(bucket, name,
                                     1 + backend.push(bucket, name, others, copies - 1), copies)
        return attrs

    def delete(self, bucket, name):
        """Delete every copy, wherever it is."""
        self.buckets.require(bucket)
        validate_object_name(name)
        found = False
        for node, res in self._fanout(lambda n, b: b.delete(bucket, name), self._everyone()):
            if res is None:
                found = True
            elif not isinstance(res, ObjectNotFound):
                log.warning("delete of ais://%s/%s on node %s: %s", bucket, name, node.id, res)
        if not found:
            raise ObjectNotFound(bucket, name)

    # ---- listing
    def list_objects(self, bucket, prefix="", page_size=0, token="", start_after="",
                     with_meta=False):
        """Every node's page merged in name order, copies counted once."""
        limit = _limit(page_size)

        def page(node, b):
            attrs, nxt = b.list_objects(bucket, prefix, limit, token, start_after, with_meta)
            return [(a.name, a) for a in attrs], bool(nxt)
        out, last = self._merged(bucket, limit, page)
        return out, last or ""

    def list_expanded(self, bucket, prefix="", page_size=0, token="", start_after="",
                      with_meta=False, max_inflate=0):
        """ARCH_DIR: each node expands the shards it holds (no shard leaves its node); the
        pages are merged in the order of (object, file in it), copies counted once. A node
        resumes with the merged token as with its own (see archlist): `<shard>NUL<file>`
        for a shard it does not hold just goes on after the shard."""
        limit = _limit(page_size)

        def page(node, b):
            entries, nxt = b.list_expanded(bucket, prefix, limit, token, start_after,
                                           with_meta, max_inflate)
            return _expanded_keys(entries, token, prefix), bool(nxt)
        out, last = self._merged(bucket, limit, page)
        if last is None:
            return out, ""
        shard, file = last
        if file:
            return out, f"{shard}{SEP}{file}"
        return out, f"{shard}{SEP}" if out[-1][1] & IS_ARCHIVE else shard

    def _merged(self, bucket, limit, page):
        """Every node's page, `page(node, backend)` -> ([(key, entry)] in key order, more),
        merged in key order with equal keys once: (entries, key of the last one when there
        are more, else None). A node that still has more bounds the page: entries beyond its
        last one may be missing from it."""
        # with n copies, n-1 nodes away still leave a copy of every object to list
        tolerate = self.buckets.require(bucket).copies - 1
        lists, bound = [], None
        for node, res in self._fanout(page, self._everyone()):
            if isinstance(res, BucketNotFound):
                continue
            if isinstance(res, Unavailable) and tolerate > 0:
                tolerate -= 1
                continue
            if isinstance(res, Exception):
                raise Unavailable(f"cannot list ais://{bucket}: node {node.id}: {res}")
            keyed, more = res
            lists.append(keyed)
            if more and keyed and (bound is None or keyed[-1][0] < bound):
                bound = keyed[-1][0]
        out, last = [], None
        for key, entry in heapq.merge(*lists, key=lambda kv: kv[0]):
            if bound is not None and key > bound:
                break
            if last is not None and key == last:
                continue
            out.append(entry)
            last = key
            if len(out) == limit:
                break
        more = bound is not None or len(out) == limit and _has_more(lists, last)
        return out, (last if more and out else None)

    # ---- batches
    def batch_reader(self, n_entries, budget=None):
        """This node's share: a cluster GetBatch plans each entry where it lives
        (cluster/gather.py), so what reaches a reader here is this node's own."""
        return self.share.batch_reader(n_entries, budget)


def fetch_to_scratch(src, local):
    """An fd of an unlinked temp file of `local` holding all of `src`."""
    fd = local.scratch_fd()
    try:
        with open(fd, "wb", closefd=False) as f:
            for data in src.chunks(0, src.size):
                f.write(data)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _limit(page_size):
    return min(page_size, MAX_PAGE) if page_size > 0 else MAX_PAGE


def _has_more(lists, last):
    return any(keyed and keyed[-1][0] > last for keyed in lists)


def _expanded_keys(entries, token, prefix):
    """[((object, file or ""), entry)] of one node's expanded page: each file keyed under its
    shard, which is the last shard listed before it, else the one the page resumed in (the
    token's), else the one the prefix reaches into (the first the node would try)."""
    shard = token.split(SEP, 1)[0] if SEP in token else None
    out = []
    for attrs, flags in entries:
        if not flags & IN_ARCHIVE:
            if flags & IS_ARCHIVE:
                shard = attrs.name
            out.append(((attrs.name, ""), (attrs, flags)))
            continue
        if shard is None or not attrs.name.startswith(shard + "/"):
            shard = next((s for s, _ in archive_splits(prefix, empty_rest=True)
                          if attrs.name.startswith(s + "/")), attrs.name.rpartition("/")[0])
        out.append(((shard, attrs.name[len(shard) + 1:]), (attrs, flags)))
    return out


class _SourceStream:
    """A Source read front to back as a stream (what a PUT body needs)."""

    def __init__(self, src):
        self._chunks = src.chunks(0, src.size)
        self._buf = b""

    def read(self, n=_CHUNK):
        if not self._buf:
            self._buf = next(self._chunks, b"")
        data, self._buf = self._buf[:n], self._buf[n:]
        return data
