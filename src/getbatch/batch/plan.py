"""Resolve every entry of a validated request to a source of known size, in request order.

Everything that can fail deterministically fails here, before the status line: missing
buckets (404), missing objects or members without `coer` (404), ranges out of bounds
(416), shards that are not archives (400), too many soft errors (400). With `coer`, a
missing object or member becomes a zero-length `__404__/...` placeholder with `err_msg`.

An item's data is either a byte range of a file (plain objects, ranges, members of
uncompressed TAR and stored ZIP shards: served zero-copy) or a member that must be
decompressed (.tgz, .tar.lz4, deflated ZIP), read later in windows by assemble.py.
"""
import os
import uuid as _uuid

from ..archive import ArchiveError, MemberNotFound, open_shard
from ..store.errors import InvalidName, ObjectNotFound
from .errors import BadRequest, NotFound, RangeNotSatisfiable

MISSING_DIR = "__404__/"
ARCHIVE_EXTS = (".tar", ".tgz", ".tar.gz", ".tar.lz4", ".zip")
DEFAULT_MAX_SOFT_ERRS = int(os.environ.get("GETBATCH_MAX_SOFT_ERRS", "8"))


class Item:
    """One output entry. `path`+`offset` for file-backed data; `shard`+`member` for data to
    decompress (then `offset` is relative to the member); neither for a placeholder."""

    __slots__ = ("name", "size", "path", "offset", "shard", "member")

    def __init__(self, name, size, path=None, offset=0, shard=None, member=None):
        self.name = name
        self.size = size
        self.path = path
        self.offset = offset
        self.shard = shard
        self.member = member


class Plan:
    __slots__ = ("req", "items", "out", "uuid", "soft_errors")

    def __init__(self, req, items, out, soft_errors):
        self.req = req
        self.items = items
        self.out = out              # MossOut dicts, one per item
        self.uuid = "gbt-" + _uuid.uuid4().hex[:12]
        self.soft_errors = soft_errors

    @property
    def has_members_to_decompress(self):
        return any(it.shard is not None for it in self.items)

    def close(self):
        seen = set()
        for it in self.items:
            if it.shard is not None and id(it.shard) not in seen:
                seen.add(id(it.shard))
                it.shard.close()


def _apply_range(start, length, size, what):
    """(offset, count) of the requested range; 416 when it does not fit (AIS rules)."""
    if start == 0 and length == 0:
        return 0, size
    if length == -1:
        if start >= size:
            raise RangeNotSatisfiable(f"not satisfiable range [start={start}, length=-1] for {what} "
                                      f"of size {size}")
        return start, size - start
    if start >= size or length > size - start:
        raise RangeNotSatisfiable(f"not satisfiable range [start={start}, length={length}] for {what} "
                                  f"of size {size}")
    return start, length


class _Resolver:
    """Per-request lookups: each shard opened once, symlink-checked dirs remembered."""

    def __init__(self, store):
        self.store = store
        self.shards = {}
        self.safe_dirs = {}

    def object(self, bucket, objname):
        return self.store.locate(bucket, objname, self.safe_dirs)

    def shard(self, bucket, objname):
        key = (bucket, objname)
        shard = self.shards.get(key)
        if shard is None:
            path, _ = self.object(bucket, objname)
            shard = open_shard(path, index_dir=self.store.index_dir, name=objname)
            self.shards[key] = shard
        return shard

    def member(self, e, name, objname, archpath, ref):
        shard = self.shard(e.bucket, objname)
        m = shard.lookup(archpath)
        off, n = _apply_range(e.start, e.length, m.size, f"{archpath} in {ref}")
        extent = shard.extent(archpath)
        if extent is not None:
            return Item(name, n, shard.path, extent[0] + off)
        return Item(name, n, None, off, shard, archpath)

    def implicit_member(self, e, name, ref):
        """`shard.tar/x.wav` named as one object that does not exist: the file x.wav inside
        the shard object shard.tar (as Lhotse URLs and the SDK's plain name lists write it).
        Only tried after a miss, and only at a path prefix with an archive extension."""
        objname = e.objname
        i = objname.find("/")
        while i > 0:
            prefix = objname[:i]
            if prefix.lower().endswith(ARCHIVE_EXTS):
                try:
                    return self.member(e, name, prefix, objname[i + 1:], f"{e.provider}://{e.bucket}/{prefix}")
                except (ObjectNotFound, MemberNotFound):
                    pass
            i = objname.find("/", i + 1)
        return None


def build(req, store, max_soft_errs=DEFAULT_MAX_SOFT_ERRS) -> Plan:
    """Resolve `req` (a validated MossReq) against `store`."""
    for provider, bucket in {(e.provider, e.bucket) for e in req.entries}:
        if provider != "ais" or not store.has_bucket(bucket):
            raise NotFound(f'bucket "{provider}://{bucket}" does not exist')
    onob, coer = req.onob, req.coer
    resolve = _Resolver(store)
    items, out = [], []
    soft = 0
    for e in req.entries:
        base = e.objname if onob else f"{e.bucket}/{e.objname}"
        ap = e.archpath
        name = base if not ap else (base + ap if ap.startswith("/") else f"{base}/{ap}")
        ref = f"{e.provider}://{e.bucket}/{e.objname}"
        try:
            if ap:
                item = resolve.member(e, name, e.objname, ap, ref)
            else:
                try:
                    path, size = resolve.object(e.bucket, e.objname)
                except ObjectNotFound:
                    item = resolve.implicit_member(e, name, ref) if "/" in e.objname else None
                    if item is None:
                        raise
                else:
                    off, n = _apply_range(e.start, e.length, size, ref)
                    item = Item(name, n, path, off)
            o = {"objname": e.objname, "bucket": e.bucket, "provider": e.provider, "size": item.size}
        except (ObjectNotFound, MemberNotFound) as exc:
            msg = (f"{ap} in {ref} does not exist" if isinstance(exc, MemberNotFound)
                   else f"{ref} does not exist")
            if not coer:
                raise NotFound(msg)
            soft += 1
            if soft > max_soft_errs:
                raise BadRequest(f"exceeded soft-errors limit: {soft} (max: {max_soft_errs}); "
                                 f"the last one: {msg}")
            item = Item(MISSING_DIR + name, 0)
            o = {"objname": e.objname, "bucket": e.bucket, "provider": e.provider, "size": 0,
                 "err_msg": msg}
        except InvalidName as exc:
            raise BadRequest(str(exc))
        except ArchiveError as exc:
            raise BadRequest(f"{ref}: cannot read archived file {ap!r}: {exc.reason}")
        if ap:
            o["archpath"] = ap
        if e.opaque is not None:
            o["opaque"] = e.opaque
        items.append(item)
        out.append(o)
    return Plan(req, items, out, soft)
