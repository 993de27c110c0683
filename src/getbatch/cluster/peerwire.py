"""The peer protocol of a cluster GetBatch: what a designated target (DT) sends an owner, and
the framed answer it reads back.

One intra-cluster request per owner carries both phases: `POST /v1/_peer/batch` with the
owner's sub-batch (a MossReq naming only its entries, buckets resolved, in request order).
The owner validates and plans it before its status line, so a bad entry is an ordinary AIS
error answer; otherwise the body is

    plan frame:  b"GBP1" + u32 length (big-endian) + JSON {"uuid", "out": [[name, size, err]],
                 "ids": [[position, cksum type, cksum, stamp]]}
    item frames: one per entry, in order: TAR header + data + padding to 512, exactly as a
                 TAR output archive holds the entry (a placeholder is a header of size 0)

with a `Content-Length`. The DT reads the plan frame (phase 1) and only then, while it
writes its output, the item frames (phase 2): TCP holds the owner back while the DT is
busy elsewhere, so the owner keeps its plan in the thread that answers, and the DT holds at
most one window of bytes per owner. Every frame's length follows from the plan, so a short,
broken or desynchronised stream is detected at the first frame it touches (each header is
compared with the one the DT would write).

`ids` name the object version of each item of at least `RESUMABLE` bytes (where the owner
knows it; a file inside a shard by its shard's version): such an item may be cut mid-frame
when its owner fails, and the DT resumes it from another copy only when both name the same
version (store.attrs.provably_same). With `?ids=all` the owner names the
version of every item: the DT asks so of a node standing in for the holder of an entry's
newest version, whose copy it takes only when it carries that version's stamp.
"""
import struct
from typing import Annotated, Optional

import msgspec

from ..store.attrs import ObjectAttrs
from .peers import PEER_PREFIX

PATH = PEER_PREFIX + "/batch"
IDS_PARAM, IDS_ALL = "ids", "all"   # ?ids=all: the owner names every item's version
CONTENT_TYPE = "application/x-getbatch-frames"
MAGIC = b"GBP1"
_HEAD = struct.Struct(">4sI")
PLAN_HEAD = _HEAD.size

_enc = msgspec.json.Encoder()


class _Planned(msgspec.Struct, array_like=True, gc=False):
    """[name, size, err] of one planned item (a struct: smaller than a tuple)."""

    name: str
    size: Annotated[int, msgspec.Meta(ge=0, le=1 << 62)]
    err: Optional[str]

    def __iter__(self):
        return iter((self.name, self.size, self.err))


class _Ident(msgspec.Struct, array_like=True, gc=False):
    """[position, cksum type, cksum, stamp] of an item's object version."""

    pos: Annotated[int, msgspec.Meta(ge=0)]
    cksum_type: str
    cksum_value: str
    stamp: str


class _PlanFrame(msgspec.Struct, gc=False):
    out: list[_Planned]
    uuid: str = ""
    ids: list[_Ident] = []


# typed: the owner's plan is decoded once into its final tuples (a 100,000-entry batch
# holds a plan frame's worth of them at a time)
_dec = msgspec.json.Decoder(_PlanFrame)


class WireError(Exception):
    """A peer answered something that is not the peer protocol."""


_SLICE = 4096
# items of this size and more may be cut inside their frame (the DT takes a frame of up to
# peerstream.WINDOW, 1 MiB, whole): their versions are named in the plan frame
RESUMABLE = 1 << 19


class _SubIn(msgspec.Struct, gc=False, omit_defaults=True):
    """An entry of a sub-batch: unset fields left out, so that the owner decodes a sub-batch
    of whole objects of one bucket compactly (request.Entries)."""

    objname: str
    bucket: str
    provider: str
    archpath: Optional[str] = None
    start: int = 0
    length: int = 0


def sub_batch(entries, indexes, onob):
    """The request body naming `entries[i]` for each of `indexes` (parsed MossIn, buckets
    resolved) for an owner, encoded a slice at a time (not a struct per entry at once).
    Planned with `coer` always: the DT decides what a missing entry means, after it looked
    for it on the other candidates."""
    head = _enc.encode({"coer": True, "onob": onob, "strm": True, "mime": "tar"})
    parts = [b'{"in":[']
    for lo in range(0, len(indexes), _SLICE):
        ins = []
        for i in indexes[lo:lo + _SLICE]:
            e = entries[i]
            ins.append(_SubIn(e.objname, e.bucket, e.provider, e.archpath or None, e.start,
                              e.length))
        if lo:
            parts.append(b",")
        parts.append(_enc.encode(ins)[1:-1])
    parts += [b"],", head[1:]]
    return b"".join(parts)


def plan_frame(uuid, items, identity, every_id=False):
    """The plan frame of an owner's answer: name, size and err_msg of every planned item, and
    the version of each big one (`every_id`: of every one), `identity(item)` (an
    ObjectAttrs, or None when unknown)."""
    out = [(it.name, it.size, it.err) for it in items]
    ids = []
    least = 0 if every_id else RESUMABLE
    for pos in [pos for pos, (_, size, err) in enumerate(out) if size >= least and err is None]:
        a = identity(items[pos])
        if a is not None:
            ids.append((pos, a.cksum_type, a.cksum_value, a.stamp))
    body = _enc.encode({"uuid": uuid, "out": out, "ids": ids})
    return _HEAD.pack(MAGIC, len(body)) + body


def plan_length(head):
    """Length of the JSON after an 8-byte plan-frame head."""
    magic, n = _HEAD.unpack(head)
    if magic != MAGIC:
        raise WireError(f"not a peer batch stream (starts with {bytes(head[:4])!r})")
    return n


def parse_plan(body, expected):
    """(uuid, [(name, size, err)], {position: ObjectAttrs}) of a plan frame's JSON, checked to
    hold `expected` items of sizes from 0 to 2**62."""
    try:
        doc = _dec.decode(body)
    except msgspec.DecodeError as exc:
        raise WireError(f"malformed plan frame: {exc}") from None
    out, uuid = doc.out, doc.uuid
    if len(out) != expected:
        raise WireError(f"plan frame lists {len(out)} items, {expected} were asked for")
    ids = {}
    for d in doc.ids:
        if d.pos >= expected:
            raise WireError(f"plan frame names the version of item {d.pos} of {expected}")
        ids[d.pos] = ObjectAttrs(out[d.pos].size, 0, 0, cksum_type=d.cksum_type,
                                 cksum_value=d.cksum_value, stamp=d.stamp)
    return uuid, out, ids
