"""The cluster map (smap): which nodes are live, where they listen, and who owns an object.

A `Smap` is an immutable snapshot. A request takes one snapshot and uses it throughout, so the
owners it computes do not shift under it when membership changes mid-request.

Placement is highest-random-weight (rendezvous) hashing: every node scores every object key and
the highest scores own it. Adding or removing a node moves only the objects that node wins or held,
and the next-ranked nodes are where replicas go and where a read looks when the first owner misses.
"""
from __future__ import annotations

import heapq
import time
from collections.abc import Iterable

import xxhash

# seconds a node that left the map is still asked for its stamps: etcd paused past the lease
# drops every node at once, and each registers again (joining) within about a second, while
# readers go on (two lease TTLs; a node away for good costs a refused connection meanwhile)
LEFT_GRACE = 8.0


class NodeInfo:
    """A live node: its stable id and the URL clients and peers reach it at."""

    __slots__ = ("id", "url", "seed")

    id: str
    url: str
    seed: int

    def __init__(self, id: str, url: str) -> None:
        self.id = id
        self.url = url.rstrip("/")
        self.seed = xxhash.xxh64_intdigest(id.encode())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NodeInfo) and (self.id, self.url) == (other.id, other.url)

    def __hash__(self) -> int:
        return hash((self.id, self.url))

    def __repr__(self) -> str:
        return f"NodeInfo({self.id!r}, {self.url!r})"


def placement_key(provider: str, bucket: str, name: str) -> bytes:
    """The bytes HRW scores for an object: provider, bucket and name, unambiguous because bucket
    names cannot contain '/'."""
    return f"{provider}/{bucket}/{name}".encode()


def hrw_score(key: bytes, node: NodeInfo) -> tuple[int, str]:
    """Node `node`'s score for object key `key` (bytes, see placement_key): the highest score
    owns the object. Ties (as good as impossible with 64-bit hashes) go to the greater id."""
    return xxhash.xxh64_intdigest(key, seed=node.seed), node.id


class Smap:
    """An immutable cluster map: `version` (etcd revision; 0 for a lone node), the live nodes
    sorted by id, and which of them is this node. `joining`: nodes registered but still
    catching up with their peers: they receive writes, nothing is read from them, and they
    are not in `nodes`. `left`: (NodeInfo, time.monotonic() when it left this map) of the
    nodes that were in an earlier map, neither live nor joining now."""

    __slots__ = ("version", "nodes", "self_id", "joining", "left", "_left_until", "_by_id",
                 "_targets")

    version: int
    nodes: tuple[NodeInfo, ...]
    self_id: str
    joining: tuple[NodeInfo, ...]
    left: tuple[tuple[NodeInfo, float], ...]

    def __init__(self, version: int, nodes: Iterable[NodeInfo], self_id: str,
                 joining: Iterable[NodeInfo] = (),
                 left: Iterable[tuple[NodeInfo, float]] = ()) -> None:
        self.version = version
        self.nodes = tuple(sorted(nodes, key=lambda n: n.id))
        self.self_id = self_id
        self.joining = tuple(sorted(joining, key=lambda n: n.id))
        self.left = tuple(left)
        self._left_until = max((when for _, when in self.left), default=0.0) + LEFT_GRACE
        self._by_id = {n.id: n for n in self.nodes}
        self._targets = dict(self._by_id, **{n.id: n for n in self.joining})

    def target(self, node_id: str) -> NodeInfo | None:
        """The NodeInfo with that id when it may take a write (live or joining), or None."""
        return self._targets.get(node_id)

    def write_ranked(self, key: bytes) -> list[NodeInfo]:
        """The nodes a write of `key` may go to, live and joining, best HRW owner first."""
        return sorted(self.nodes + self.joining, key=lambda n: hrw_score(key, n), reverse=True)

    @classmethod
    def single(cls, node_id: str, url: str = "") -> Smap:
        """The map of a node that is not part of a cluster."""
        return cls(0, [NodeInfo(node_id, url)], node_id)

    def node(self, node_id: str) -> NodeInfo | None:
        """The NodeInfo with that id, or None when it is not live."""
        return self._by_id.get(node_id)

    @property
    def me(self) -> NodeInfo | None:
        return self._by_id.get(self.self_id)

    def ranked(self, key: bytes) -> list[NodeInfo]:
        """All live nodes, best HRW owner of `key` (bytes, see placement_key) first."""
        return sorted(self.nodes, key=lambda n: hrw_score(key, n), reverse=True)

    def recently_left(self, now: float | None = None) -> list[NodeInfo]:
        """The nodes that left this map less than LEFT_GRACE seconds ago."""
        now = time.monotonic() if now is None else now
        return [n for n, when in self.left if now - when < LEFT_GRACE]

    def compared(self, key: bytes, copies: int, me: NodeInfo | None = None) -> list[NodeInfo]:
        """The nodes whose stamps decide which version of `key` a read serves, best HRW
        owner first: the first `copies` live nodes, and the first `copies` of every node
        that may hold a copy: live, joining (it holds what it held), left this map less than
        LEFT_GRACE seconds ago (after an etcd pause each node registers again: a read must
        not miss the holders of the newest version meanwhile), and `me` (the reading node's
        NodeInfo: its own copy counts also when it is not in its map). A node away answers
        nothing: the others decide."""
        if (not self.joining and (me is None or me.id in self._by_id)
                and not (self.left and time.monotonic() < self._left_until)):
            # steady state: the live nodes alone (a GetBatch asks per entry: no full sort)
            return heapq.nlargest(copies, self.nodes, key=lambda n: hrw_score(key, n))
        ranked = self.ranked(key)
        first = ranked[:copies]
        extra = list(self.joining) + self.recently_left()
        if me is not None and me.id not in self._targets and all(n.id != me.id for n in extra):
            extra.append(me)
        if not extra:
            return first
        every = sorted(ranked + extra, key=lambda n: hrw_score(key, n), reverse=True)
        chosen = {n.id for n in first} | {n.id for n in every[:copies]}
        return [n for n in every if n.id in chosen]

    def alone(self, node_id: str) -> bool:
        """True when `node_id` is the only node this map knows of (live, joining, or left
        lately): there is nobody else to read from or compare with."""
        return ([n.id for n in self.nodes] == [node_id] and not self.joining
                and not self.recently_left())

    def owners(self, provider: str, bucket: str, name: str, copies: int = 1) -> list[NodeInfo]:
        """The `copies` nodes that should hold the object, first owner first."""
        return self.ranked(placement_key(provider, bucket, name))[:copies]

    def owner(self, provider: str, bucket: str, name: str) -> NodeInfo:
        return self.ranked(placement_key(provider, bucket, name))[0]

    def __len__(self) -> int:
        return len(self.nodes)

    def __repr__(self) -> str:
        return f"Smap(v{self.version}, {[n.id for n in self.nodes]}, self={self.self_id})"
