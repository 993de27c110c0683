"""The `ais` backend of a cluster node: HRW placement over the local store and its peers.

- `LocalShare` is this node's share of the cluster's buckets: the local store, whose bucket
  directories are made on first use (a bucket exists cluster-wide, in etcd). Peers reach it
  through the intra-cluster endpoints (`/v1/_peer/objects/...`, `/v1/_peer/buckets/...`).
- `PeerBackend` is one peer seen as a backend: the same operations over HTTP, against that
  peer's `LocalShare`.
- `ClusterStore` is what the server and GetBatch planning see as `ais`: for each object it
  ranks the live nodes by HRW and uses the local share or the peer backend. PUT stores the
  object on the top-`copies` nodes (each copy atomic) before it returns; reads try the ranked
  nodes in turn, so an object written before a membership change is still found (lazy
  placement, until `rebalance` moves it); DELETE removes every copy; listing merges every
  node's pages.
"""
import heapq
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import msgpack

from ..archive import open_shard
from ..store.attrs import ObjectAttrs
from ..store.backend import Backend, BatchReader, Source
from ..store.errors import (BucketExists, BucketNotFound, Conflict, Elsewhere,
                            InsufficientStorage, ObjectNotFound, StoreError, Unavailable)
from ..store.local import MAX_PAGE
from ..store.names import validate_bucket_name, validate_object_name
from .peers import PEER_PREFIX, PeerUnavailable
from .smap import placement_key

log = logging.getLogger("getbatch.cluster")

_CHUNK = 1 << 20
STAT_TIMEOUT = (2.0, 5.0)  # a HEAD is quick: a node that takes longer is treated as away
_LIST_PROPS = "name,size"
_META_PROPS = "name,size,checksum,version,atime"


def _quote(name):
    return quote(name, safe="/")


class LocalShare(Backend):
    """The local store, for buckets that exist in the cluster table (`buckets`)."""

    provider = "ais"

    def __init__(self, local, buckets):
        self.local = local
        self.buckets = buckets

    def _dir(self, bucket):
        """Make the bucket's local directory if the cluster has the bucket."""
        if not self.local.has_bucket(bucket):
            validate_bucket_name(bucket)
            self.buckets.require(bucket)
            try:
                self.local.create_bucket(bucket)
            except BucketExists:
                pass

    def list_buckets(self):
        return self.buckets.names()

    def has_bucket(self, name):
        return self.local.has_bucket(name) or self.buckets.get(name) is not None

    def create_bucket(self, name):
        self._dir(name)

    def destroy_bucket(self, name):
        """Drop the local copy of a bucket (gone from the table, or going)."""
        try:
            self.local.destroy_bucket(name)
        except BucketNotFound:
            pass

    def stat(self, bucket, name):
        self._dir(bucket)
        return self.local.stat(bucket, name)

    def open(self, bucket, name):
        self._dir(bucket)
        return self.local.open(bucket, name)

    def put(self, bucket, name, stream, length=None):
        self._dir(bucket)
        return self.local.put(bucket, name, stream, length)

    def append(self, bucket, name, handle, stream, length=None):
        self._dir(bucket)
        return self.local.append(bucket, name, handle, stream, length)

    def flush(self, bucket, name, handle):
        self._dir(bucket)
        return self.local.flush(bucket, name, handle)

    def delete(self, bucket, name):
        self._dir(bucket)
        return self.local.delete(bucket, name)

    def list_objects(self, bucket, prefix="", page_size=0, token="", start_after="",
                     with_meta=False):
        self._dir(bucket)
        return self.local.list_objects(bucket, prefix, page_size, token, start_after, with_meta)

    def open_shard(self, bucket, name, budget=None):
        self._dir(bucket)
        return self.local.open_shard(bucket, name, budget)

    def batch_reader(self, n_entries, budget=None):
        return self.local.batch_reader(n_entries, budget)


class _Body:
    """A request body for `requests`: reads `length` bytes of `stream` (all of it when None),
    counting what was read, so a failed forward knows whether it can be retried."""

    def __init__(self, stream, length):
        self.stream = stream
        self.length = length
        self.consumed = 0

    def __len__(self):
        return self.length

    def read(self, n=_CHUNK):
        if self.length is not None:
            n = min(n, self.length - self.consumed)
            if n <= 0:
                return b""
        data = self.stream.read(n)
        self.consumed += len(data)
        return data


def _chunked(stream):
    while True:
        data = stream.read(_CHUNK)
        if not data:
            return
        yield data


class PeerSource(Source):
    """An object on a peer, read over HTTP. `resp`: a GET already under way (stream=True) for
    the whole object, used by the first full read; otherwise each read is a ranged GET."""

    __slots__ = ("peer", "bucket", "name", "size", "_resp")

    def __init__(self, peer, bucket, name, size, resp=None):
        self.peer = peer
        self.bucket = bucket
        self.name = name
        self.size = size
        self._resp = resp

    def _take(self, offset, length):
        r, self._resp = self._resp, None
        if r is not None and offset == 0 and length == self.size:
            return r
        if r is not None:
            r.close()
        return self.peer.get(self.bucket, self.name, offset, length)

    def pread(self, length, offset):
        length = max(0, min(length, self.size - offset))
        if length == 0:
            return b""
        r = self._take(offset, length)
        try:
            data = r.content
        except Exception as exc:
            raise OSError(f"reading ais://{self.bucket}/{self.name} from peer "
                          f"{self.peer.node.id}: {exc}") from None
        return data

    def chunks(self, offset, length):
        if length <= 0:
            return
        r = self._take(offset, length)
        got = 0
        try:
            for data in r.iter_content(_CHUNK):
                got += len(data)
                yield data
        except Exception as exc:
            raise OSError(f"reading ais://{self.bucket}/{self.name} from peer "
                          f"{self.peer.node.id}: {exc}") from None
        finally:
            r.close()
        if got != length:
            raise OSError(f"ais://{self.bucket}/{self.name} from peer {self.peer.node.id}: "
                          f"{got} of {length} bytes")

    def close(self):
        r, self._resp = self._resp, None
        if r is not None:
            r.close()


def _attrs_from_headers(h, bucket, name):
    atime = int(h.get("Ais-Atime") or 0)
    return ObjectAttrs(size=int(h.get("Content-Length") or 0), mtime_ns=atime, atime_ns=atime,
                       version=h.get("Ais-Version", ""), cksum_type=h.get("Ais-Checksum-Type", ""),
                       cksum_value=h.get("Ais-Checksum-Value", ""), name=name, bucket=bucket)


class PeerBackend:
    """One peer's LocalShare over its intra-cluster endpoints. Errors come back as the
    store's exceptions; an unreachable peer is PeerUnavailable."""

    def __init__(self, peers, node):
        self.peers = peers
        self.node = node

    def _obj(self, bucket, name):
        return f"{PEER_PREFIX}/objects/{bucket}/{_quote(name)}"

    def _check(self, r, bucket, name=None):
        if r.status_code < 300:
            return r
        try:
            msg = r.json().get("message", "")
        except ValueError:
            msg = r.text[:200]
        r.close()
        if r.status_code == 404:
            if name is not None and f"{bucket}/" in msg:
                raise ObjectNotFound(bucket, name)
            if name is not None and not msg:  # HEAD: no body
                raise ObjectNotFound(bucket, name)
            raise BucketNotFound(bucket)
        if r.status_code == 409:
            raise Conflict(msg, bucket, name)
        if r.status_code == 507:
            raise InsufficientStorage(bucket, name)
        if 400 <= r.status_code < 500:
            raise StoreError(msg)
        raise Unavailable(f"peer {self.node.id}: {r.status_code} {msg}")

    def stat(self, bucket, name):
        r = self.peers.request(self.node, "HEAD", self._obj(bucket, name), timeout=STAT_TIMEOUT)
        return _attrs_from_headers(self._check(r, bucket, name).headers, bucket, name)

    def open(self, bucket, name):
        """(PeerSource, attrs) with the GET already under way."""
        r = self.peers.request(self.node, "GET", self._obj(bucket, name), stream=True)
        self._check(r, bucket, name)
        attrs = _attrs_from_headers(r.headers, bucket, name)
        return PeerSource(self, bucket, name, attrs.size, r), attrs

    def get(self, bucket, name, offset, length):
        r = self.peers.request(self.node, "GET", self._obj(bucket, name), stream=True,
                               headers={"Range": f"bytes={offset}-{offset + length - 1}"})
        return self._check(r, bucket, name)

    def put(self, bucket, name, body, length=None):
        data = _Body(body, length) if length is not None else _chunked(body)
        r = self.peers.request(self.node, "PUT", self._obj(bucket, name), data=data)
        self._check(r, bucket, name)

    def push(self, bucket, name, candidates, wanted):
        """Ask the peer to copy its object to `wanted` of `candidates` (node ids, in order);
        how many copies it made."""
        r = self.peers.request(self.node, "POST", f"{PEER_PREFIX}/push/{bucket}/{_quote(name)}",
                               params={"to": ",".join(candidates), "copies": str(wanted)})
        return int(self._check(r, bucket, name).json()["copies"])

    def append(self, bucket, name, handle, body, length=None):
        data = _Body(body, length) if length is not None else _chunked(body)
        r = self.peers.request(self.node, "PUT", self._obj(bucket, name), data=data,
                               params={"append_type": "append", "append_handle": handle})
        return self._check(r, bucket, name).headers.get("Ais-Append-Handle", "")

    def flush(self, bucket, name, handle):
        r = self.peers.request(self.node, "PUT", self._obj(bucket, name),
                               params={"append_type": "flush", "append_handle": handle})
        self._check(r, bucket, name)

    def delete(self, bucket, name):
        self._check(self.peers.request(self.node, "DELETE", self._obj(bucket, name)), bucket, name)

    def destroy_bucket(self, bucket):
        r = self.peers.request(self.node, "DELETE", f"{PEER_PREFIX}/buckets/{bucket}",
                               json={"action": "destroy-bck"})
        if r.status_code != 404:
            self._check(r, bucket)

    def list_objects(self, bucket, prefix, page_size, token, start_after, with_meta):
        lso = {"prefix": prefix, "pagesize": page_size, "continuation_token": token,
               "start_after": start_after, "props": _META_PROPS if with_meta else _LIST_PROPS}
        r = self.peers.request(self.node, "GET", f"{PEER_PREFIX}/buckets/{bucket}",
                               json={"action": "list", "value": lso},
                               headers={"Accept": "application/msgpack"})
        if r.status_code == 404:
            return [], ""
        res = msgpack.unpackb(self._check(r, bucket).content)
        out = [ObjectAttrs(size=e["s"], mtime_ns=int(e.get("a") or 0),
                           atime_ns=int(e.get("a") or 0), version=e.get("v", ""),
                           cksum_value=e.get("cs", ""), name=e["n"], bucket=bucket)
               for e in res.get("Entries") or ()]
        return out, res.get("ContinuationToken", "")


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
        return self.buckets.require(bucket).copies

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

    def open_shard(self, bucket, name, budget=None):
        """The local shard when this node holds it; else the object is served by the node
        that does (Elsewhere: the object API answers 307 there)."""
        def attempt(b):
            if b is self.share:
                return self.share.open_shard(bucket, name, budget)
            b.stat(bucket, name)
            raise Elsewhere(b.node.url, bucket, name)
        return self._find(bucket, name, attempt)

    # ---- writes
    def put(self, bucket, name, stream, length=None):
        """Store on the top-`copies` nodes before returning: the first reachable owner
        receives the body (here, or forwarded), then copies it to the others. The attrs when
        stored here, None when stored on peers (the server does not use them)."""
        copies = self._copies(bucket)
        validate_object_name(name)
        ranked = self._ranked(bucket, name)
        body = _Body(stream, length)
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
        """Every node's page merged in name order, copies counted once. A node that still
        has more bounds the page: names beyond its last one may be missing from it."""
        self.buckets.require(bucket)
        limit = min(page_size, MAX_PAGE) if page_size > 0 else MAX_PAGE
        pages = self._fanout(lambda n, b: b.list_objects(bucket, prefix, limit, token,
                                                         start_after, with_meta),
                             self._everyone())
        lists, bound = [], None
        # with n copies, n-1 nodes away still leave a copy of every object to list
        tolerate = self.buckets.require(bucket).copies - 1
        for node, res in pages:
            if isinstance(res, BucketNotFound):
                continue
            if isinstance(res, Unavailable) and tolerate > 0:
                tolerate -= 1
                continue
            if isinstance(res, Exception):
                raise Unavailable(f"cannot list ais://{bucket}: node {node.id}: {res}")
            entries, more = res
            lists.append(entries)
            if more and entries and (bound is None or entries[-1].name < bound):
                bound = entries[-1].name
        out = []
        for e in heapq.merge(*lists, key=lambda e: e.name):
            if bound is not None and e.name > bound:
                break
            if out and out[-1].name == e.name:
                continue
            out.append(e)
            if len(out) == limit:
                break
        more = bound is not None or len(out) == limit and _has_more(lists, out[-1].name)
        return out, (out[-1].name if more and out else "")

    # ---- batches
    def batch_reader(self, n_entries, budget=None):
        return ClusterBatchReader(self, n_entries, budget)


def _has_more(lists, last):
    return any(entries and entries[-1].name > last for entries in lists)


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


def _fetch(src, local):
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


class _FetchedSource(Source):
    """A peer's object for the emit loop, which reads fds: fetched into a local temp file
    when first read (lazy, so a batch holds only a window of them at once)."""

    __slots__ = ("peer_src", "local", "size", "fd")
    lazy = True

    def __init__(self, peer_src, local):
        self.peer_src = peer_src
        self.local = local
        self.size = peer_src.size
        self.fd = -1

    def fileno(self):
        if self.fd < 0:
            self.fd = _fetch(self.peer_src, self.local)
        return self.fd

    def pread(self, length, offset):
        return os.pread(self.fileno(), length, offset)

    def close(self):
        self.peer_src.close()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class ClusterBatchReader(BatchReader):
    """GetBatch reads on a cluster, item by item: the local share first, then the ranked
    peers. (Correct but not fast: the two-phase cluster GetBatch replaces it for peers.)"""

    def __init__(self, store, n_entries, budget=None):
        super().__init__(store, budget)
        self.local = store.share.batch_reader(n_entries, budget)

    def source(self, bucket, name):
        try:
            return self.local.source(bucket, name)
        except (ObjectNotFound, BucketNotFound):
            pass
        for node, backend in self.backend._ranked(bucket, name):
            if backend is self.backend.share:
                continue
            try:
                attrs = backend.stat(bucket, name)
            except (ObjectNotFound, Unavailable):
                continue
            return _FetchedSource(PeerSource(backend, bucket, name, attrs.size),
                                  self.backend.share.local)
        raise ObjectNotFound(bucket, name)

    def shard(self, bucket, name):
        key = (bucket, name)
        shard = self._shards.get(key)
        if shard is None:
            try:
                shard = self.local.shard(bucket, name)
            except (ObjectNotFound, BucketNotFound):
                shard = self._fetch_shard(bucket, name)
            self._shards[key] = shard
        return shard

    def _fetch_shard(self, bucket, name):
        """A peer's shard, copied into an unlinked local temp file for this request."""
        src, _ = self.backend.open(bucket, name)
        with src:
            fd = _fetch(src, self.backend.share.local)
        return open_shard(fd, name=name, budget=self.budget)

    def close(self):
        super().close()
        self.local.close()

