"""Which holder of each entry of a cluster GetBatch has the entry's newest version: for
buckets with `copies` > 1, the stamps of every entry's compared holders (Smap.compared: the
first `copies` live nodes, and joining or lately gone ones among the first `copies`) are
compared (one request per holder for the whole batch, all holders asked in parallel), as a
GET compares them (store.py), so that a GetBatch never reads a copy older than an
acknowledged write (docs/consistency.md). Stale holders get read repair. Entries of copies=1
buckets cost nothing."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ..store.errors import StoreError, Unavailable
from .smap import NodeInfo, Smap, placement_key
from .store import AWAY, HolderState, holder_state, newest_state

if TYPE_CHECKING:
    from .share import LocalShare
    from .store import ClusterStore

State = tuple[str, bool]   # (stamp, is_tomb) of a name on one holder


class Entry(Protocol):
    """What is compared of a GetBatch entry (batch.request's entries have it)."""
    provider: str
    bucket: str
    objname: str


def local_state(share: LocalShare, bucket: str, name: str) -> State | None:
    """(stamp, is_tomb) of the name in this node's share, None when it has neither."""
    st = holder_state(share, bucket, name)
    return None if st is AWAY else st


def newest_holders(store: ClusterStore, smap: Smap,
                   entries: Sequence[Entry]) -> dict[int, tuple[NodeInfo | None, str]]:
    """{entry index: (NodeInfo of a holder of the entry's newest version, or None when that
    version is a delete; its stamp)} for the `ais` entries of buckets with copies > 1 that
    some holder has; `store`: the node's ClusterStore. Unavailable when none of an entry's
    compared holders answers (what another node holds may be older than an acknowledged
    write)."""
    me = store.cluster.node
    copies: dict[str, int] = {}
    asks: dict[str, tuple[NodeInfo, list[tuple[int, int]]]] = {}   # node id -> (node, [(entry, rank)])
    for i, e in enumerate(entries):
        if e.provider != "ais":
            continue
        n = copies.get(e.bucket)
        if n is None:
            try:
                n = copies[e.bucket] = store.buckets.require(e.bucket).copies
            except StoreError:
                n = copies[e.bucket] = 1   # the planner reports the bucket
        if n > 1:
            key = placement_key("ais", e.bucket, e.objname)
            for r, node in enumerate(smap.compared(key, n, me)):
                asks.setdefault(node.id, (node, []))[1].append((i, r))
    if not asks:
        return {}

    def ask(node: NodeInfo, backend: Any) -> list[HolderState]:
        pairs = [(entries[i].bucket, entries[i].objname) for i, _ in asks[node.id][1]]
        if backend is store.share:
            return [local_state(backend, b, n) for b, n in pairs]
        return backend.states(pairs)

    # entry index -> {rank: ((node, backend), state)}: of equal stamps, the first owner's
    # is read
    states: dict[int, dict[int, tuple[Any, Any]]] = {}
    failed: dict[str, str] = {}   # node id -> why it did not answer
    targets = [(node, store.backend_of(node)) for node, _ in asks.values()]
    for t, (node, got) in zip(targets, store.fanout(ask, targets)):
        ranks = asks[node.id][1]
        if isinstance(got, Exception):
            failed[node.id] = str(got)
            got = [AWAY] * len(ranks)   # what the others hold is compared
        for (i, r), st in zip(ranks, got):
            states.setdefault(i, {})[r] = (t, st)
    out = {}
    for i, by_rank in states.items():
        sts = [by_rank[r] for r in sorted(by_rank)]
        if all(st is AWAY for _, st in sts):
            e = entries[i]
            ids = sorted(t[0].id for t, _ in sts)
            raise Unavailable(f"none of the nodes that may hold the newest version of "
                              f"ais://{e.bucket}/{e.objname} answered "
                              f"({'; '.join(failed.get(n, n) for n in ids)}); try again")
        newest = newest_state(sts)
        if newest is not None:
            out[i] = (None if newest[2] else newest[1][0], newest[0])
            store.repair(entries[i].bucket, entries[i].objname, newest, sts)
    return out
