"""One peer as a backend: the store operations over HTTP, against that peer's `LocalShare`
(its intra-cluster endpoints). Answers come back as the store's exceptions; a peer that does
not answer is `PeerUnavailable`.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from email.message import Message
from typing import Any
from urllib.parse import quote

import msgpack

from ..archive import MemberNotFound
from ..store.archived import ArchivedFile
from ..store.archlist import ARCH_DIR
from ..archive import InflateBudget
from ..store.attrs import ObjectAttrs
from ..store.backend import Readable, Source
from ..store.errors import (BucketNotFound, Conflict, InsufficientStorage, ObjectNotFound,
                            StoreError, Unavailable)
from .peers import PEER_PREFIX, STAMP_HEADER, TOMB_HEADER, Node, PeerResponse, Peers
from .share import Tombstoned

_CHUNK = 1 << 20
STAT_TIMEOUT = 5.0  # a HEAD is quick: a node that takes longer is treated as away
DELETE_TIMEOUT = 10.0  # a delete too (a paused node must not hold up the others')
_LIST_PROPS = "name,size"
_META_PROPS = "name,size,checksum,version,atime"


State = tuple[str, bool]   # (stamp, is_tomb) of a name on the peer


def _quote(name: str) -> str:
    return quote(name, safe="/")


class Body:
    """A request body for Peers.request: reads `length` bytes of `stream` (all of it when None),
    counting what was read, so a failed forward knows whether it can be retried."""

    def __init__(self, stream: Readable, length: int | None) -> None:
        self.stream = stream
        self.length = length
        self.consumed = 0

    def __len__(self) -> int:
        if self.length is None:   # only read: put sends such a body chunked
            raise TypeError("a Body of unknown length has no len()")
        return self.length

    def read(self, n: int = _CHUNK) -> bytes:
        if self.length is not None:
            n = min(n, self.length - self.consumed)
            if n <= 0:
                return b""
        data = self.stream.read(n)
        self.consumed += len(data)
        return data


def _chunked(stream: Readable) -> Iterator[bytes]:
    while True:
        data = stream.read(_CHUNK)
        if not data:
            return
        yield data


class PeerSource(Source):
    """An object on a peer, read over HTTP. `resp`: a GET already under way (stream=True) for
    the whole object, used by the first full read; otherwise each read is a ranged GET."""

    __slots__ = ("peer", "bucket", "name", "size", "_resp")

    def __init__(self, peer: PeerBackend, bucket: str, name: str, size: int,
                 resp: PeerResponse | None = None) -> None:
        self.peer = peer
        self.bucket = bucket
        self.name = name
        self.size = size
        self._resp = resp

    def _take(self, offset: int, length: int) -> PeerResponse:
        r, self._resp = self._resp, None
        if r is not None and offset == 0 and length == self.size:
            return r
        if r is not None:
            r.close()
        return self.peer.get(self.bucket, self.name, offset, length)

    def pread(self, length: int, offset: int) -> bytes:
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

    def chunks(self, offset: int, length: int) -> Iterator[bytes]:
        if length <= 0:
            return
        yield from _stream(self._take(offset, length), length,
                           f"ais://{self.bucket}/{self.name}", self.peer.node.id)

    def close(self) -> None:
        r, self._resp = self._resp, None
        if r is not None:
            r.close()


def _stream(r: PeerResponse, length: int, what: str, node_id: str) -> Iterator[bytes]:
    """The body of the streamed response `r`, which must be `length` bytes (OSError when it
    is not, or breaks off); `r` is closed at the end."""
    got = 0
    try:
        for data in r.iter_content(_CHUNK):
            got += len(data)
            yield data
    except Exception as exc:
        raise OSError(f"reading {what} from peer {node_id}: {exc}") from None
    finally:
        r.close()
    if got != length:
        raise OSError(f"{what} from peer {node_id}: {got} of {length} bytes")


class PeerFile(ArchivedFile):
    """A file inside a shard held by a peer: the peer's answer to GET ?archpath=, streamed."""

    def __init__(self, resp: PeerResponse, what: str, node_id: str) -> None:
        self._resp = resp
        self.what = what
        self.node_id = node_id
        self.size = int(resp.headers.get("Content-Length") or 0)

    def chunks(self) -> Iterator[bytes]:
        return _stream(self._resp, self.size, self.what, self.node_id)

    def close(self) -> None:
        self._resp.close()


class PeerRefusal(StoreError):
    """A peer's 4xx without a meaning of its own (not a missing bucket or object, a name
    collision, nor its refusal of this node): a 400 with the peer's message where it
    judged what the client asked (a bad archpath), a 503 where the client's write was
    valid (cluster/store.py)."""

    def __init__(self, node: Node, status: int, message: str) -> None:
        super().__init__(message)
        self.node = node
        self.status = status


def _is_state(st: Any) -> bool:
    return (isinstance(st, list) and len(st) == 2 and isinstance(st[0], str)
            and isinstance(st[1], bool))


def _message(r: PeerResponse) -> str:
    """The AIS error message of a peer's answer: the body's, or a HEAD's Hdr-Error header's."""
    try:
        if r.method == "HEAD":
            return json.loads(r.headers.get("Hdr-Error") or "{}").get("message", "")
        return r.json().get("message", "")
    except ValueError:
        return r.text[:200]


def _attrs_from_headers(h: Message, bucket: str, name: str) -> ObjectAttrs:
    atime = int(h.get("Ais-Atime") or 0)
    return ObjectAttrs(size=int(h.get("Content-Length") or 0), mtime_ns=atime, atime_ns=atime,
                       version=h.get("Ais-Version", ""), cksum_type=h.get("Ais-Checksum-Type", ""),
                       cksum_value=h.get("Ais-Checksum-Value", ""), name=name, bucket=bucket,
                       stamp=h.get(STAMP_HEADER, ""))


class PeerBackend:
    """One peer's LocalShare over its intra-cluster endpoints. Errors come back as the
    store's exceptions; an unreachable peer is PeerUnavailable."""

    def __init__(self, peers: Peers, node: Node) -> None:
        self.peers = peers
        self.node = node

    def _obj(self, bucket: str, name: str) -> str:
        return f"{PEER_PREFIX}/objects/{bucket}/{_quote(name)}"

    def _check(self, r: PeerResponse, bucket: str, name: str | None = None) -> PeerResponse:
        if r.status_code < 300:
            return r
        msg = _message(r)
        r.close()
        if r.status_code == 404 and name is not None and r.headers.get(TOMB_HEADER):
            raise Tombstoned(bucket, name, r.headers[TOMB_HEADER])
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
        if r.status_code in (401, 403):
            # the intra-cluster routes check nothing of the client's, only that this node
            # is of the cluster (its secret, its certificate): as good as unreachable
            raise Unavailable(f"peer {self.node.id} refused this node: {r.status_code} {msg}")
        if 400 <= r.status_code < 500:
            raise PeerRefusal(self.node, r.status_code, msg)
        raise Unavailable(f"peer {self.node.id}: {r.status_code} {msg}")

    def stat(self, bucket: str, name: str) -> ObjectAttrs:
        r = self.peers.request(self.node, "HEAD", self._obj(bucket, name), timeout=STAT_TIMEOUT)
        return _attrs_from_headers(self._check(r, bucket, name).headers, bucket, name)

    def open(self, bucket: str, name: str) -> tuple[PeerSource, ObjectAttrs]:
        """(PeerSource, attrs) with the GET already under way."""
        r = self.peers.request(self.node, "GET", self._obj(bucket, name), stream=True)
        self._check(r, bucket, name)
        attrs = _attrs_from_headers(r.headers, bucket, name)
        return PeerSource(self, bucket, name, attrs.size, r), attrs

    def get(self, bucket: str, name: str, offset: int, length: int) -> PeerResponse:
        r = self.peers.request(self.node, "GET", self._obj(bucket, name), stream=True,
                               headers={"Range": f"bytes={offset}-{offset + length - 1}"})
        return self._check(r, bucket, name)

    def _check_archived(self, r: PeerResponse, bucket: str, name: str,
                        archpath: str) -> PeerResponse:
        """`_check`, and a 404 saying the shard does not hold the file is MemberNotFound (the
        shard is there: no other node needs asking)."""
        missing = MemberNotFound(f"ais://{bucket}/{name}", archpath)
        if r.status_code == 404 and _message(r) == str(missing):
            r.close()
            raise missing
        return self._check(r, bucket, name)

    def open_archived(self, bucket: str, name: str, archpath: str,
                      budget: InflateBudget | None = None) -> PeerFile:
        """PeerFile with the GET already under way (the peer applies its own max_inflate)."""
        r = self.peers.request(self.node, "GET", self._obj(bucket, name),
                               params={"archpath": archpath}, stream=True)
        self._check_archived(r, bucket, name, archpath)
        return PeerFile(r, f"{archpath} in ais://{bucket}/{name}", self.node.id)

    def stat_archived(self, bucket: str, name: str, archpath: str,
                      budget: InflateBudget | None = None) -> ObjectAttrs:
        r = self.peers.request(self.node, "HEAD", self._obj(bucket, name),
                               params={"archpath": archpath}, timeout=STAT_TIMEOUT)
        return _attrs_from_headers(self._check_archived(r, bucket, name, archpath).headers,
                                   bucket, name)

    def stamps_page(self, bucket: str, after: str, limit: int,
                    asker: str) -> dict[str, Any] | None:
        """One page of the peer's stamps of `bucket`, names after `after` (GET .../stamps):
        {"entries": [(name, stamp, is_tomb)], "next": name or ""}; None when the peer has no
        such bucket. `asker`: the id of the node catching up; the peer answers 503 until its
        own map has that node as a write target."""
        r = self.peers.request(self.node, "GET", f"{PEER_PREFIX}/stamps/{bucket}",
                               params={"after": after, "limit": str(limit), "for": asker})
        if r.status_code == 404:
            return None
        return msgpack.unpackb(self._check(r, bucket).content)

    def states(self, pairs: list[tuple[str, str]]) -> list[State | None]:
        """The peer's (stamp, is_tomb) of each (bucket, name) of `pairs` (POST .../states),
        None where it has neither; one request for all of them (a cluster GetBatch)."""
        r = self.peers.request(self.node, "POST", f"{PEER_PREFIX}/states",
                               data=msgpack.packb(pairs), timeout=STAT_TIMEOUT,
                               headers={"Content-Type": "application/msgpack"})
        got = msgpack.unpackb(self._check(r, "").content)
        if not (isinstance(got, list) and len(got) == len(pairs)
                and all(st is None or _is_state(st) for st in got)):
            # compared as it is, it would fail the GetBatch with a 500: a peer that fails
            raise Unavailable(f"peer {self.node.id}: its answer for {len(pairs)} names is not "
                              "as many [stamp, is_tomb] or null")
        return [st if st is None else tuple(st) for st in got]

    def put(self, bucket: str, name: str, body: Readable, length: int | None = None,
            stamp: str | None = None) -> str:
        """Store on the peer: a new version it stamps, or (`stamp`) a copy of one, which it
        keeps only if newer than its own. The stamp the peer stored ("" if it kept its own)."""
        data = Body(body, length) if length is not None else _chunked(body)
        r = self.peers.request(self.node, "PUT", self._obj(bucket, name), data=data,
                               headers={STAMP_HEADER: stamp} if stamp else None)
        return self._check(r, bucket, name).headers.get(STAMP_HEADER, "")

    def push(self, bucket: str, name: str, candidates: Iterable[str], wanted: int,
             required: bool = True) -> int:
        """Ask the peer to copy its object to `wanted` of `candidates` (node ids, in order);
        how many copies it made (fewer only when not `required`: else it answers 503)."""
        params = {"to": ",".join(candidates), "copies": str(wanted)}
        if not required:
            params["required"] = "false"
        r = self.peers.request(self.node, "POST", f"{PEER_PREFIX}/push/{bucket}/{_quote(name)}",
                               params=params)
        return int(self._check(r, bucket, name).json()["copies"])

    def append(self, bucket: str, name: str, handle: str, body: Readable,
               length: int | None = None) -> str:
        data = Body(body, length) if length is not None else _chunked(body)
        r = self.peers.request(self.node, "PUT", self._obj(bucket, name), data=data,
                               params={"append_type": "append", "append_handle": handle})
        return self._check(r, bucket, name).headers.get("Ais-Append-Handle", "")

    def flush(self, bucket: str, name: str, handle: str) -> None:
        r = self.peers.request(self.node, "PUT", self._obj(bucket, name),
                               params={"append_type": "flush", "append_handle": handle})
        self._check(r, bucket, name)

    def delete(self, bucket: str, name: str, stamp: str | None = None,
               keep: bool = False) -> tuple[str, bool]:
        """Delete on the peer (a delete it stamps, or one stamped `stamp`); with `keep` it
        leaves a tombstone even without the object. (The delete's stamp, whether the peer
        had the object); ObjectNotFound when it had not, without `keep`."""
        r = self.peers.request(self.node, "DELETE", self._obj(bucket, name),
                               headers={STAMP_HEADER: stamp} if stamp else None,
                               params={"keep": "true"} if keep else None,
                               timeout=DELETE_TIMEOUT)
        h = self._check(r, bucket, name).headers
        return h.get(STAMP_HEADER, ""), h.get("Ais-Present") == "true"

    def destroy_bucket(self, bucket: str) -> None:
        r = self.peers.request(self.node, "DELETE", f"{PEER_PREFIX}/buckets/{bucket}",
                               json={"action": "destroy-bck"})
        if r.status_code != 404:
            self._check(r, bucket)

    def _list(self, bucket: str, lso: dict[str, str | int]) -> tuple[list[tuple[ObjectAttrs, int]], str]:
        """([(ObjectAttrs, flags)], next token) of the peer's listing page for LsoMsg `lso`."""
        r = self.peers.request(self.node, "GET", f"{PEER_PREFIX}/buckets/{bucket}",
                               json={"action": "list", "value": lso},
                               headers={"Accept": "application/msgpack"})
        if r.status_code == 404:
            return [], ""
        res = msgpack.unpackb(self._check(r, bucket).content)
        out = [(ObjectAttrs(size=e["s"], mtime_ns=int(e.get("a") or 0),
                            atime_ns=int(e.get("a") or 0), version=e.get("v", ""),
                            cksum_value=e.get("cs", ""), name=e["n"], bucket=bucket),
                e.get("f", 0))
               for e in res.get("Entries") or ()]
        return out, res.get("ContinuationToken", "")

    @staticmethod
    def _lso(prefix: str, page_size: int, token: str, start_after: str, with_meta: bool,
             flags: int = 0) -> dict[str, str | int]:
        return {"prefix": prefix, "pagesize": page_size, "continuation_token": token,
                "start_after": start_after, "props": _META_PROPS if with_meta else _LIST_PROPS,
                "flags": str(flags)}

    def list_objects(self, bucket: str, prefix: str, page_size: int, token: str, start_after: str,
                     with_meta: bool) -> tuple[list[ObjectAttrs], str]:
        entries, nxt = self._list(bucket, self._lso(prefix, page_size, token, start_after,
                                                    with_meta))
        return [a for a, _ in entries], nxt

    def list_expanded(self, bucket: str, prefix: str, page_size: int, token: str,
                      start_after: str, with_meta: bool,
                      max_inflate: int = 0) -> tuple[list[tuple[ObjectAttrs, int]], str]:
        """The peer's own shards expanded (ARCH_DIR); the peer applies its own max_inflate."""
        return self._list(bucket, self._lso(prefix, page_size, token, start_after, with_meta,
                                            ARCH_DIR))
