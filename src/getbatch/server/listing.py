"""List objects: the `list` action of GET /v1/buckets/<bucket>, and its flags.

The reply is msgpack with Go field names, as the AIS SDK 2.0.0 requires (`Content-Type:
application/msgpack` exactly, a non-empty UUID, `ContinuationToken` empty on the last page).

`flags` is AIS's LsoMsg bitmask (a decimal string; the SDK's `ListObjectFlag` names the
bits). Each bit the SDK can send is honoured, is a no-op here for a stated reason, or is
refused with a 400 that names it: a flag silently ignored would make a client quietly get
another listing than it asked for.
"""
import uuid

import msgpack
import msgspec

from ..store.archlist import ARCH_DIR
from ..store.dirlisting import list_level
from .errors import AISError

_enc = msgspec.json.Encoder()

NAME_ONLY, NAME_SIZE, NO_RECURSION, NO_DIRS = 1 << 4, 1 << 5, 1 << 11, 1 << 13
# bit -> (SDK name, why it changes nothing here)
_NO_OPS = {
    0: ("CACHED", "every object of a local bucket is in-cluster"),
    1: ("MISSING", "objects have no copies that could outlive them"),
    2: ("DELETED", "AIS does not implement it either"),
    6: ("BCK_PRESENT", "buckets listed are present"),
    7: ("DONT_HEAD_REMOTE", "listing does not HEAD remote buckets"),
    8: ("DONT_ADD_REMOTE", "nothing is added to bucket metadata by a listing"),
    10: ("ONLY_REMOTE_PROPS", "an optimization AIS does not use yet"),
    13: ("NO_DIRS", "only non-recursive listings hold virtual directories"),
    14: ("IS_S3", "internal to AIS's S3 API"),
}
# bits for local buckets only: on a remote bucket they would need cache bookkeeping
_LOCAL_ONLY = {0, 1}
_REFUSED = {
    9: ("NOT_CACHED", "every object of a local bucket is in-cluster, and remote listings "
                      "cannot filter by cache state yet"),
    12: ("DIFF", "there are no remote versions to compare with"),
    15: ("NBI", "there are no bucket inventories"),
}
_HONOURED = {3: "ARCH_DIR", 4: "NAME_ONLY", 5: "NAME_SIZE", 11: "NO_RECURSION"}


def parse_flags(value, provider):
    """The flags bitmask of a list-objects request; 400 for a malformed value or a flag that
    is refused (named, with the reason)."""
    if value is None or value == "":
        return 0
    if isinstance(value, str) and value.isdecimal():
        flags = int(value)
    elif type(value) is int and value >= 0:
        flags = value
    else:
        raise AISError(400, f'invalid list-objects "flags" {value!r}: expecting a decimal '
                            'string (a bitmask of ListObjectFlag bits)')
    for bit in range(flags.bit_length()):
        if not flags >> bit & 1 or bit in _HONOURED:
            continue
        if bit in _NO_OPS and (provider == "ais" or bit not in _LOCAL_ONLY):
            continue
        if bit in _REFUSED or bit in _NO_OPS:
            name, why = _REFUSED.get(bit) or (_NO_OPS[bit][0], "not supported for "
                                              f"{provider} buckets")
            raise AISError(400, f"list-objects flag {name} (bit {bit}) is not supported: {why}")
        raise AISError(400, f"unknown list-objects flag bit {bit} (flags {flags})")
    if flags & ARCH_DIR and flags & NO_RECURSION:
        raise AISError(400, "list-objects flags ARCH_DIR and NO_RECURSION together are not "
                            "supported: list a shard's files with a prefix instead")
    return flags


def _text(lso, key):
    v = lso.get(key)
    if v is None:
        return ""
    if not isinstance(v, str):
        raise AISError(400, f'invalid list-objects "{key}" {v!r}: expecting a string')
    return v


def list_objects(backend, bucket, lso, accept, max_inflate):
    """(content type, body) of one listing page for the LsoMsg `lso`."""
    if not isinstance(lso, dict):
        raise AISError(400, 'malformed list-objects request: "value" must be an object')
    page_size = lso.get("pagesize") or 0
    if type(page_size) is not int or page_size < 0:
        raise AISError(400, f"invalid pagesize {page_size!r}: expecting a non-negative integer")
    flags = parse_flags(lso.get("flags"), backend.provider)
    props = set((_text(lso, "props") or "name,size").split(","))
    if flags & NAME_ONLY:
        props = {"name"}
    elif flags & NAME_SIZE:
        props = {"name", "size"}
    backend.require_bucket(bucket)
    args = dict(prefix=_text(lso, "prefix"), page_size=page_size,
                token=_text(lso, "continuation_token"), start_after=_text(lso, "start_after"),
                with_meta=bool(props & {"checksum", "version"}))
    if flags & ARCH_DIR:
        entries, token = backend.list_expanded(bucket, max_inflate=max_inflate, **args)
    elif flags & NO_RECURSION:
        entries, token = list_level(backend, bucket, dirs=not flags & NO_DIRS, **args)
    else:
        attrs, token = backend.list_objects(bucket, **args)
        entries = [(a, 0) for a in attrs]
    out = []
    for e, eflags in entries:
        d = {"n": e.name}
        if not flags & NAME_ONLY:
            d["s"] = e.size
        if "checksum" in props and e.cksum_value:
            d["cs"] = e.cksum_value
        if "version" in props and e.version:
            d["v"] = str(e.version)
        if "atime" in props:
            d["a"] = str(e.atime_ns)
        if eflags:
            d["f"] = eflags
        out.append(d)
    res = {"UUID": _text(lso, "uuid") or uuid.uuid4().hex, "ContinuationToken": token,
           "Entries": out, "Flags": 0}
    if "msgpack" in accept:
        return "application/msgpack", msgpack.packb(res)
    return "application/json", _enc.encode(res)
