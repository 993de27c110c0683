"""The `ais` backend of a cluster node: HRW placement over the local store and its peers.

- `LocalShare` (share.py) is this node's share of the cluster's buckets; peers reach it
  through the intra-cluster endpoints (`/v1/_peer/objects/...`, `/v1/_peer/buckets/...`).
- `PeerBackend` (peer_backend.py) is one peer seen as a backend: the same operations over
  HTTP, against that peer's `LocalShare`.
- `ClusterStore` is what the server and GetBatch planning see as `ais`: for each object it
  ranks the live nodes by HRW and uses the local share or the peer backend. PUT stores the
  object on `copies` distinct live nodes (each copy atomic) before it returns, or fails with
  503; reads try the ranked nodes in turn, so an object written before a membership change is
  still found (lazy placement, until `rebalance` moves it); DELETE leaves a tombstone on every
  live node; listing merges every node's pages. A file inside a shard is read where the shard
  is (a peer streams it), and a listing with shards expanded has each node expand its own:
  shards do not cross the network.

Every write is a version with a stamp (store/stamps.py), given by the first owner that takes
it and carried to every copy; newest stamp wins everywhere. A read compares the stamps of the
name's `copies` first holders, serves the newest and repairs the older copies in the
background (read repair). docs/consistency.md states what this guarantees.
"""
import enum
import heapq
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from ..archive import InflateBudget, Shard, open_shard
from ..store.archived import ArchivedFile, archive_splits
from ..store.archlist import IN_ARCHIVE, IS_ARCHIVE, SEP
from ..store.attrs import ObjectAttrs
from ..store.backend import Backend, BatchReader, Readable, Source
from ..store.paging import page_limit
from ..store.errors import (BucketNotFound, IncompleteUpload, ObjectNotFound, StoreError,
                            Unavailable)
from ..store.local import LocalStore
from ..store.names import validate_bucket_name, validate_object_name
from .buckets import BucketTable, check_mirror
from .peer_backend import Body, PeerBackend, PeerRefusal
from .peers import Peers
from .share import LocalShare, Tombstoned
from .smap import NodeInfo, Smap, placement_key

log = logging.getLogger("getbatch.cluster")

_CHUNK = 1 << 20
REPAIRS_MAX = 64       # read repairs queued at once per process; beyond, rebalance repairs

Holder = LocalShare | PeerBackend          # a node's copies: this node's share, or a peer's
Target = tuple[NodeInfo, Holder]
T = TypeVar("T")
K = TypeVar("K", str, tuple[str, str])   # a merged listing's sort key
E = TypeVar("E")   # a merged listing's entry


class _Away(enum.Enum):
    AWAY = "away"


AWAY = _Away.AWAY  # the state of a holder that did not answer
# (stamp, is_tomb) of the name on one holder, None when it has neither, AWAY when it did
# not answer
HolderState = tuple[str, bool] | None | _Away
Newest = tuple[str, Target, bool]   # (stamp, holder, is_tomb) of the newest version


class NodeView(Protocol):
    """What the store reads of its node's Cluster (node.py)."""

    node: NodeInfo
    peers: Peers

    @property
    def smap(self) -> Smap: ...

    def lease_fresh(self) -> bool: ...


class TooFewNodes(Unavailable):
    """A write that cannot reach the distinct live nodes its bucket's `copies` needs (503,
    with Retry-After): it is not acknowledged."""


class NotWritable(Unavailable):
    """This node may not accept writes now: it is not in its own map, or its membership
    lease in etcd is not fresh (etcd unreachable, or the node was paused)."""


class ClusterStore(Backend):
    """The `ais` backend on a cluster node (see the module docstring)."""

    provider = "ais"

    def __init__(self, cluster: NodeView, share: LocalShare, buckets: BucketTable) -> None:
        self.cluster = cluster
        self.share = share
        self.buckets = buckets
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="fanout")
        self._repair_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="repair")
        self._repairs = threading.BoundedSemaphore(REPAIRS_MAX)
        self.repaired = 0  # copies brought up to date by read repair (this process)

    # ---- placement
    def _ranked(self, bucket: str, name: str) -> list[Target]:
        """[(NodeInfo, backend)] of every live node, HRW order for the object. This node is
        in it even when not (yet) in the map, last, so its own copy is always looked at."""
        smap = self.cluster.smap
        me = self.cluster.node
        nodes = smap.ranked(placement_key("ais", bucket, name))
        if smap.node(me.id) is None:
            nodes.append(me)
        return [(n, self.backend_of(n)) for n in nodes]

    def backend_of(self, node: NodeInfo) -> Holder:
        """The backend that reads and writes `node`'s copies: this node's share, or a peer's."""
        if node.id == self.cluster.node.id:
            return self.share
        return PeerBackend(self.cluster.peers, node)

    def _write_targets(self, bucket: str, name: str, copies: int) -> list[Target]:
        """[(NodeInfo, backend)] a write may go to: the live and joining nodes in HRW order,
        one per advertise URL; TooFewNodes when fewer than `copies`, NotWritable when this
        node is not live or cannot vouch for its map."""
        me = self.cluster.node
        smap = self.cluster.smap
        if smap.node(me.id) is None or not self.cluster.lease_fresh():
            raise NotWritable(f"node {me.id} cannot accept writes now: its membership in etcd "
                              "is not current (etcd unreachable, or the node was paused); "
                              "try again")
        seen: set[str] = set()
        out: list[Target] = []
        for node in smap.write_ranked(placement_key("ais", bucket, name)):
            if node.url not in seen:
                seen.add(node.url)
                out.append((node, self.backend_of(node)))
        if len(out) < copies:
            raise TooFewNodes(f"cannot store ais://{bucket}/{name}: {len(out)} distinct live "
                              f"nodes reachable, {copies} needed (the bucket's mirror copies); "
                              "nothing stored, try again")
        return out

    def _everyone(self, joining: bool = False) -> list[Target]:
        """[(NodeInfo, backend)] of every live node (and with `joining`, every node catching
        up: a delete or a bucket's destruction reaches them as a write does), this node
        included."""
        smap = self.cluster.smap
        nodes = list(smap.nodes) + (list(smap.joining) if joining else [])
        if all(n.id != self.cluster.node.id for n in nodes):
            nodes.append(self.cluster.node)
        return [(n, self.backend_of(n)) for n in nodes]

    def fanout(self, fn: Callable[[NodeInfo, Holder], T],
               targets: Iterable[Target]) -> list[tuple[NodeInfo, T | Exception]]:
        """fn(node, backend) on every target in parallel; [(node, result or exception)]."""
        def run(t: Target) -> tuple[NodeInfo, T | Exception]:
            try:
                return t[0], fn(*t)
            except Exception as exc:
                return t[0], exc
        return list(self._pool.map(run, targets))

    # ---- buckets
    def list_buckets(self) -> list[str]:
        return self.buckets.names()

    def has_bucket(self, name: str) -> bool:
        try:
            validate_bucket_name(name)
        except StoreError:
            return False
        return self.buckets.get(name) is not None

    def create_bucket(self, name: str) -> None:
        validate_bucket_name(name)
        self.buckets.create(name)

    def destroy_bucket(self, name: str) -> None:
        validate_bucket_name(name)
        self.buckets.destroy(name)
        # every live and joining node drops its copy now (a node away meanwhile drops it when
        # it boots)
        for node, res in self.fanout(lambda n, b: b.destroy_bucket(name),
                                      self._everyone(joining=True)):
            if isinstance(res, Exception):
                log.warning("bucket ais://%s destroyed, but node %s kept its copy for now: %s",
                            name, node.id, res)

    def bucket_props(self, name: str) -> dict[str, Any]:
        # from etcd, not this worker's watched table: a change acknowledged through another
        # node is seen at once (read-your-write); the table when etcd is away
        meta = self.buckets.current(name)
        return {"provider": "ais", "created": meta.props.get("created", ""),
                "mirror": meta.props.get("mirror") or {"enabled": False, "copies": 1},
                "version": str(meta.revision)}

    def set_bucket_props(self, name: str, props: dict[str, Any]) -> None:
        unknown = set(props) - {"mirror"}
        if unknown:
            raise StoreError(f"bucket property {sorted(unknown)[0]!r} cannot be set here "
                             "(supported: mirror)")
        self.buckets.require(name)
        self.buckets.set_props(name, {"mirror": check_mirror(props["mirror"])})

    def _copies(self, bucket: str) -> int:
        """Copies a write makes: from etcd's current bucket properties (one round trip per
        write; reads never pay it)."""
        return self.buckets.current(bucket).copies

    # ---- reads: the ranked nodes in turn, the newest of the first `copies` holders served
    def _find(self, bucket: str, name: str, fn: Callable[[Holder], T],
              stamp_of: Callable[[T], str] | None = None,
              discard: Callable[[T], object] | None = None) -> T:
        """fn(backend) on the holder of the name's newest version. The ranked nodes are
        tried in turn (ObjectNotFound when none has it); with `copies` > 1 the stamps of the
        compared nodes (Smap.compared: the first `copies` live ones, and any joining or
        lately gone that rank among the first `copies`) are fetched meanwhile, and when one
        is newer than what fn read (`stamp_of(result)`), the result is dropped
        (`discard(result)`) and fn runs on the newest holder, or the name is missing when the
        newest is a tombstone. Older copies are repaired in the background. Without
        `stamp_of`, the stamps are compared first and fn runs on the newest holder only.
        Unavailable when none of the compared nodes answers: what any other node holds may
        be older than an acknowledged write."""
        copies = self.buckets.require(bucket).copies
        validate_object_name(name)
        ranked = self._ranked(bucket, name)
        me = self.cluster.node
        compared: list[Target] = [] if copies <= 1 else [
            (n, self.backend_of(n)) for n in
            self.cluster.smap.compared(placement_key("ais", bucket, name), copies, me)]
        if all(t[0].id == me.id for t in compared):
            return self._first(bucket, name, ranked, fn, copies=copies)
        if stamp_of is None:
            states = self.copy_states(bucket, name, compared)
            _answered(bucket, name, compared, states)
            newest = newest_state(states)
            if newest is not None and newest[2]:
                raise ObjectNotFound(bucket, name)
            order = ranked if newest is None else [newest[1]] + [
                t for t in ranked if t[0].id != newest[1][0].id]
            self.repair(bucket, name, newest, states)
            return self._first(bucket, name, order, fn, copies=copies)
        first = ranked[0][0].id
        checks = [(t, self._pool.submit(holder_state, t[1], bucket, name))
                  for t in compared if t[0].id != first]
        seen: list[tuple[Target, HolderState]] = []
        try:
            node_t, res = self._first_found(bucket, name, ranked, fn, seen, copies)
            served: str | None = stamp_of(res)
        except ObjectNotFound:
            served = None
        states = [(t, f.result()) for t, f in checks]
        if served is not None:
            seen.append((node_t, (served, False)))
        try:
            _answered(bucket, name, compared, states + seen)
        except Unavailable:
            if served is not None and discard is not None:
                discard(res)
            raise
        states += [(t, st) for t, st in seen if st is not None and st is not AWAY]
        newest = newest_state(states)
        self.repair(bucket, name, newest, states)
        if served is not None and (newest is None or served >= newest[0]):
            return res
        if served is not None and discard is not None:
            discard(res)
        if newest is None or newest[2]:
            raise ObjectNotFound(bucket, name)
        res = fn(newest[1][1])
        if stamp_of(res) < newest[0]:
            if discard is not None:
                discard(res)
            raise Unavailable(f"the newest copy of ais://{bucket}/{name} changed while being "
                              "read; try again")
        return res

    def _first(self, bucket: str, name: str, ranked: Sequence[Target], fn: Callable[[Holder], T],
               copies: int = 1) -> T:
        """fn(backend) on the first of `ranked` that has the object: see _first_found."""
        return self._first_found(bucket, name, ranked, fn, None, copies)[1]

    def _first_found(self, bucket: str, name: str, ranked: Sequence[Target],
                     fn: Callable[[Holder], T], seen: list[tuple[Target, HolderState]] | None,
                     copies: int = 1) -> tuple[Target, T]:
        """((node, backend), fn(backend)) of the first of `ranked` that has the object, what
        each node tried before said appended to `seen` (unless None) as states (a
        tombstone, None when missing, AWAY when unreachable). ObjectNotFound when no node
        has it, Unavailable when as many nodes as the bucket keeps `copies` could not be
        asked (every holder may be among them) and no node knew of a delete."""
        unreachable: list[str] = []
        deleted = False
        for t in ranked:
            try:
                res = fn(t[1])
            except Tombstoned as exc:
                deleted = True
                if seen is not None:
                    seen.append((t, (exc.stamp, True)))
                continue
            except ObjectNotFound:
                if seen is not None:
                    seen.append((t, None))
                continue
            except Unavailable as exc:
                if seen is not None:
                    seen.append((t, AWAY))
                unreachable.append(str(exc))
                continue
            return t, res
        if len(unreachable) >= copies and not deleted:
            raise Unavailable(f"ais://{bucket}/{name} is on none of the reachable nodes, and "
                              f"{len(unreachable)} node(s) that may hold it could not be asked "
                              f"({'; '.join(unreachable)}); try again")
        if unreachable:
            log.info("ais://%s/%s not found on the reachable nodes; unreachable: %s", bucket,
                     name, "; ".join(unreachable))
        raise ObjectNotFound(bucket, name)

    def copy_states(self, bucket: str, name: str,
                    targets: Iterable[Target]) -> list[tuple[Target, HolderState]]:
        """[((node, backend), (stamp, is_tomb) or None when missing)] of the targets that
        answered, asked in parallel."""
        futures = [(t, self._pool.submit(holder_state, t[1], bucket, name)) for t in targets]
        return [(t, f.result()) for t, f in futures]

    def repair(self, bucket: str, name: str, newest: Newest | None,
               states: Sequence[tuple[Target, HolderState]]) -> None:
        """Bring the answering holders whose copy is older than `newest` (or missing) up to
        it, in the background; at most REPAIRS_MAX at once per process (beyond that,
        rebalance repairs them)."""
        if newest is None:
            return
        stamp, (src, src_backend), tomb = newest
        stale = [t for t, st in states
                 if not isinstance(st, _Away) and t[0].id != src.id
                 and (st is None or st[0] < stamp) and not (tomb and st is None)]
        if not stale or not self._repairs.acquire(blocking=False):
            return

        def run() -> None:
            ids = [t[0].id for t in stale]
            try:
                if tomb:
                    for _, backend in stale:
                        backend.delete(bucket, name, stamp, keep=True)
                elif isinstance(src_backend, PeerBackend):
                    src_backend.push(bucket, name, ids, len(ids), required=False)
                else:   # this node's share
                    self.push(bucket, name, ids, len(ids), required=False)
                self.repaired += len(stale)
                log.info("read repair: ais://%s/%s brought to %s on %s", bucket, name, stamp,
                         ", ".join(ids))
            except StoreError as exc:
                log.info("read repair of ais://%s/%s on %s failed (rebalance retries it): %s",
                         bucket, name, ", ".join(ids), exc)
            finally:
                self._repairs.release()
        self._repair_pool.submit(run)

    def stat(self, bucket: str, name: str) -> ObjectAttrs:
        return self._find(bucket, name, lambda b: b.stat(bucket, name), lambda a: a.stamp)

    def open(self, bucket: str, name: str) -> tuple[Source, ObjectAttrs]:
        def opened(b: Holder) -> tuple[Source, ObjectAttrs]:
            return b.open(bucket, name)
        return self._find(bucket, name, opened, lambda r: r[1].stamp, lambda r: r[0].close())

    def open_archived(self, bucket: str, name: str, archpath: str,
                      budget: InflateBudget | None = None) -> ArchivedFile:
        """A file inside a shard, read where the shard is: here, or streamed from the peer
        that holds it (its answer to GET ?archpath=, which checks its own max_inflate)."""
        return self._find(bucket, name, lambda b: b.open_archived(bucket, name, archpath,
                                                                  budget))

    def stat_archived(self, bucket: str, name: str, archpath: str,
                      budget: InflateBudget | None = None) -> ObjectAttrs:
        return self._find(bucket, name, lambda b: b.stat_archived(bucket, name, archpath,
                                                                  budget))

    def index_shard(self, bucket: str, name: str, budget: InflateBudget | None = None) -> int:
        """Index the copy this node holds (ObjectNotFound when it holds none): an index is
        used where its shard is, so every node indexes its own (the CLI asks each)."""
        return self.share.index_shard(bucket, name, budget)

    def shard_index_state(self, bucket: str, name: str) -> tuple[str, Any, int] | None:
        return self.share.shard_index_state(bucket, name)

    def open_shard(self, bucket: str, name: str, budget: InflateBudget | None = None) -> Shard:
        """The shard here when this node holds it, else a copy of a peer's in an unlinked
        local temp file (the whole shard crosses the network: the object API and listings
        use open_archived and list_expanded instead, which leave it where it is)."""
        try:
            return self.share.open_shard(bucket, name, budget)
        except (ObjectNotFound, BucketNotFound):
            pass

        def fetch(b: Holder) -> Shard:
            src, _ = b.open(bucket, name)
            with src:
                fd = fetch_to_scratch(src, self.share.local)
            return open_shard(fd, name=name, budget=budget,
                              memory=self.share.local.shard_memory)
        return self._find(bucket, name, fetch)

    # ---- writes
    def put(self, bucket: str, name: str, stream: Readable,
            length: int | None = None) -> ObjectAttrs | None:
        """Store on `copies` distinct live nodes before returning: the first reachable owner
        receives the body (here, or forwarded) and stamps it, then copies it to the others;
        TooFewNodes (503) when fewer copies could be made. The attrs when stored here, None
        when stored on peers (the server does not use them)."""
        copies = self._copies(bucket)
        validate_object_name(name)
        targets = self._write_targets(bucket, name, copies)
        body = Body(stream, length)
        for node, backend in targets:
            others = [n.id for n, _ in targets if n.id != node.id]
            if isinstance(backend, LocalShare):   # this node's share
                attrs = self.share.put(bucket, name, body, length)
                self.push(bucket, name, others, copies - 1)
                return attrs
            try:
                backend.put(bucket, name, body, length)
            except (Unavailable, *_PEER_REFUSALS) as exc:
                if body.consumed:
                    raise Unavailable(f"node {node.id} could not take ais://{bucket}/{name} "
                                      f"({exc}); try again") from None
                log.info("put of ais://%s/%s: node %s cannot take it now: %s", bucket, name,
                         node.id, exc)
                continue
            if copies > 1:
                self._copies_from(node, backend, bucket, name, others, copies)
            return None
        raise TooFewNodes(f"no node could store ais://{bucket}/{name} (0 of {copies} "
                          "reachable); try again")

    def push(self, bucket: str, name: str, candidates: Iterable[str], wanted: int,
             required: bool = True) -> int:
        """Copy the local object, stamp and all, to `wanted` of `candidates` (node ids, in
        order; one per advertise URL), skipping those that cannot be reached; how many
        copies were made (TooFewNodes when fewer than `wanted` and `required`). A node
        holding a newer version keeps it: it still counts, the name is there."""
        if wanted <= 0:
            return 0
        smap = self.cluster.smap
        made = 0
        used = {self.cluster.node.url}
        for node_id in candidates:
            node = smap.target(node_id)
            if node is None or node_id == self.cluster.node.id or node.url in used:
                continue
            try:
                src, attrs = self.share.open(bucket, name)
            except ObjectNotFound:
                # replaced meanwhile by a newer delete: this version is no more
                raise Unavailable(f"ais://{bucket}/{name} was deleted while its copies were "
                                  "being made (a newer delete); not acknowledged, try again"
                                  ) from None
            try:
                with src:
                    PeerBackend(self.cluster.peers, node).put(
                        bucket, name, SourceStream(src), attrs.size, attrs.stamp)
                made += 1
                used.add(node.url)
            except (Unavailable, *_PEER_REFUSALS) as exc:
                # a peer that cannot take the copy now (away, or its bucket table not
                # current yet) is skipped, as an unreachable one
                log.warning("copy of ais://%s/%s to %s failed: %s", bucket, name, node_id, exc)
                continue
            if made == wanted:
                break
        if required:
            self._require_copies(bucket, name, 1 + made, 1 + wanted)
        return made

    def _copies_from(self, node: NodeInfo, backend: PeerBackend, bucket: str, name: str,
                     others: list[str], copies: int) -> None:
        """Have peer `node` (its `backend`), which stored the version, copy it to
        `copies` - 1 of `others`; TooFewNodes when fewer were made, Unavailable when the
        peer no longer has it (a newer delete) or does not know the bucket yet."""
        try:
            made = backend.push(bucket, name, others, copies - 1)
        except _PEER_REFUSALS as exc:
            raise Unavailable(f"node {node.id} stored ais://{bucket}/{name} but could not copy "
                              f"it on ({exc}); not acknowledged, try again") from None
        self._require_copies(bucket, name, 1 + made, copies)

    @staticmethod
    def _require_copies(bucket: str, name: str, have: int, want: int) -> None:
        if have < want:
            raise TooFewNodes(f"ais://{bucket}/{name} reached {have} of the {want} distinct "
                              "live nodes its bucket's mirror needs: not acknowledged "
                              "(it may be on those reached); try again")

    def append(self, bucket: str, name: str, handle: str, stream: Readable,
               length: int | None = None) -> str:
        """Appends go to the first owner, which holds the session."""
        self.buckets.require(bucket)
        node, backend = self._ranked(bucket, name)[0]
        return backend.append(bucket, name, handle, stream, length)

    def flush(self, bucket: str, name: str, handle: str) -> ObjectAttrs | None:
        copies = self._copies(bucket)
        targets = self._write_targets(bucket, name, copies)
        node, backend = self._ranked(bucket, name)[0]
        attrs = backend.flush(bucket, name, handle)
        if copies > 1:
            others = [n.id for n, _ in targets if n.id != node.id]
            if isinstance(backend, PeerBackend):
                self._copies_from(node, backend, bucket, name, others, copies)
            else:   # this node's share
                self.push(bucket, name, others, copies - 1)
        return attrs

    def delete(self, bucket: str, name: str) -> None:
        """Delete as a version: the first reachable owner stamps the delete (newer than the
        version it has), then every live and joining node applies it, leaving a tombstone (a
        node away learns it when it returns: catch-up, read repair, rebalance). Acknowledged once
        `copies` distinct nodes hold the tombstone; ObjectNotFound when no node had the
        object."""
        copies = self._copies(bucket)
        validate_object_name(name)
        targets = self._write_targets(bucket, name, copies)
        stamp: str | None = None
        found, placed = False, set()
        for node, backend in targets:
            try:
                stamp, existed = backend.delete(bucket, name, None, keep=True)
            except Unavailable:
                continue
            except _PEER_REFUSALS:
                if backend is self.share:
                    raise   # this node's own answer
                continue
            found, first = existed, node
            placed.add(node.url)
            break
        if stamp is None:
            raise TooFewNodes(f"no node could delete ais://{bucket}/{name} (0 of {copies} "
                              "reachable); try again")
        rest = [t for t in self._everyone(joining=True) if t[0].id != first.id]
        missed = False
        for node, res in self.fanout(lambda n, b: b.delete(bucket, name, stamp, keep=True),
                                     rest):
            if isinstance(res, Exception):
                log.warning("delete of ais://%s/%s on node %s: %s", bucket, name, node.id, res)
                missed = True
                continue
            found = found or res[1]
            placed.add(node.url)
        self._require_copies(bucket, name, len(placed), copies)
        if not found and not missed:
            # every node answered that it had none (a node that did not answer may have
            # held a copy: the delete then stands, its tombstone newer than that copy)
            raise ObjectNotFound(bucket, name)

    # ---- listing
    def list_objects(self, bucket: str, prefix: str = "", page_size: int = 0, token: str = "",
                     start_after: str = "", with_meta: bool = False) -> tuple[list[ObjectAttrs], str]:
        """Every node's page merged in name order, copies counted once."""
        limit = page_limit(page_size)

        def page(node: NodeInfo, b: Holder) -> tuple[list[tuple[str, ObjectAttrs]], bool]:
            attrs, nxt = b.list_objects(bucket, prefix, limit, token, start_after, with_meta)
            return [(a.name, a) for a in attrs], bool(nxt)
        out, last = self._merged(bucket, limit, page)
        return out, last or ""

    def list_expanded(self, bucket: str, prefix: str = "", page_size: int = 0, token: str = "",
                      start_after: str = "", with_meta: bool = False,
                      max_inflate: int = 0) -> tuple[list[tuple[ObjectAttrs, int]], str]:
        """ARCH_DIR: each node expands the shards it holds (no shard leaves its node); the
        pages are merged in the order of (object, file in it), copies counted once. A node
        resumes with the merged token as with its own (see archlist): `<shard>NUL<file>`
        for a shard it does not hold just goes on after the shard."""
        limit = page_limit(page_size)

        def page(node: NodeInfo,
                 b: Holder) -> tuple[list[tuple[tuple[str, str], tuple[ObjectAttrs, int]]], bool]:
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

    def _merged(self, bucket: str, limit: int,
                page: Callable[[NodeInfo, Holder], tuple[list[tuple[K, E]], bool]]
                ) -> tuple[list[E], K | None]:
        """Every node's page, `page(node, backend)` -> ([(key, entry)] in key order, more),
        merged in key order with equal keys once: (entries, key of the last one when there
        are more, else None). A node that still has more bounds the page: entries beyond its
        last one may be missing from it."""
        # with n copies, n-1 nodes away still leave a copy of every object to list
        tolerate = self.buckets.require(bucket).copies - 1
        lists: list[list[tuple[K, E]]] = []
        bound: K | None = None
        for node, res in self.fanout(page, self._everyone()):
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
        out: list[E] = []
        last: K | None = None
        for key, entry in heapq.merge(*lists, key=lambda kv: kv[0]):
            if bound is not None and key > bound:
                break
            if last is not None and key == last:
                continue
            out.append(entry)
            last = key
            if len(out) == limit:
                break
        # a full page (limit >= 1) has a last key
        more = bound is not None or (last is not None and len(out) == limit
                                     and _has_more(lists, last))
        return out, (last if more and out else None)

    # ---- batches
    def batch_reader(self, n_entries: int, budget: InflateBudget | None = None) -> BatchReader:
        """This node's share: a cluster GetBatch plans each entry where it lives
        (cluster/gather.py), so what reaches a reader here is this node's own."""
        return self.share.batch_reader(n_entries, budget)


def fetch_to_scratch(src: Source, local: LocalStore) -> int:
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


# what a peer answers a valid write when its view is not current (its bucket table misses
# the bucket, the object was replaced meanwhile), the forwarded body was cut, or any 4xx of
# its own: a 503 for the client, who did nothing wrong (a peer refusing this node is
# Unavailable already). A peer's 409 (the name collides with an object there)
# and 507 (its disk is full) are what one node would answer, and pass on.
_PEER_REFUSALS = (BucketNotFound, ObjectNotFound, IncompleteUpload, PeerRefusal)


def holder_state(backend: Holder, bucket: str, name: str) -> HolderState:
    """(stamp, is_tomb) of the name on one holder, None when it has neither, AWAY when it
    does not answer."""
    try:
        return backend.stat(bucket, name).stamp, False
    except Tombstoned as t:
        return t.stamp, True
    except ObjectNotFound:
        return None
    except StoreError:
        return AWAY


def _answered(bucket: str, name: str, compared: Sequence[Target],
              states: Sequence[tuple[Target, HolderState]]) -> None:
    """Unavailable unless one of the `compared` nodes answered in `states`."""
    ids = {t[0].id for t in compared}
    if not any(st is not AWAY and t[0].id in ids for t, st in states):
        raise Unavailable(f"none of the nodes that may hold the newest version of "
                          f"ais://{bucket}/{name} answered "
                          f"({', '.join(sorted(ids))}); try again")


def newest_state(states: Iterable[tuple[Target, HolderState]]) -> Newest | None:
    """(stamp, (node, backend), is_tomb) of the newest version among `states`, or None."""
    best: Newest | None = None
    for t, st in states:
        if st is None or isinstance(st, _Away):
            continue
        if best is None or st[0] > best[0]:
            best = (st[0], t, st[1])
    return best


def _has_more(lists: Sequence[Sequence[tuple[K, Any]]], last: K) -> bool:
    return any(keyed and keyed[-1][0] > last for keyed in lists)


def _expanded_keys(entries: Iterable[tuple[ObjectAttrs, int]], token: str, prefix: str
                   ) -> list[tuple[tuple[str, str], tuple[ObjectAttrs, int]]]:
    """[((object, file or ""), entry)] of one node's expanded page: each file keyed under its
    shard, which is the last shard listed before it, else the one the page resumed in (the
    token's), else the one the prefix reaches into (the first the node would try)."""
    shard = token.split(SEP, 1)[0] if SEP in token else None
    out: list[tuple[tuple[str, str], tuple[ObjectAttrs, int]]] = []
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


class SourceStream:
    """A Source read front to back as a stream (what a PUT body needs)."""

    def __init__(self, src: Source) -> None:
        self._chunks: Iterator[bytes] = src.chunks(0, src.size)
        self._buf = b""

    def read(self, n: int = _CHUNK) -> bytes:
        if not self._buf:
            self._buf = next(self._chunks, b"")
        data, self._buf = self._buf[:n], self._buf[n:]
        return data
