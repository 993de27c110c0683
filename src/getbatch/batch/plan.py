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

    __slots__ = ("name", "size", "path", "offset", "shard", "member", "err")

    def __init__(self, name, size, path=None, offset=0, shard=None, member=None, err=None):
        self.name = name
        self.size = size
        self.path = path
        self.offset = offset
        self.shard = shard
        self.member = member
        self.err = err              # err_msg of a placeholder


class Plan:
    __slots__ = ("req", "items", "uuid", "soft_errors")

    def __init__(self, req, items, soft_errors):
        self.req = req
        self.items = items          # one per request entry, in request order
        self.uuid = "gbt-" + _uuid.uuid4().hex[:12]
        self.soft_errors = soft_errors

    def out(self):
        """The MossResp `out` list (buffered mode only, so streaming never builds it)."""
        res = []
        for e, it in zip(self.req.entries, self.items):
            o = {"objname": e.objname, "bucket": e.bucket, "provider": e.provider, "size": it.size}
            if e.archpath:
                o["archpath"] = e.archpath
            if it.err is not None:
                o["err_msg"] = it.err
            if e.opaque is not None:
                o["opaque"] = e.opaque
            res.append(o)
        return res

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
    locate, safe_dirs = store.locate, resolve.safe_dirs
    items = []
    append = items.append
    soft = 0
    for e in req.entries:
        base = e.objname if onob else f"{e.bucket}/{e.objname}"
        ap = e.archpath
        try:
            if not ap:
                try:
                    path, size = locate(e.bucket, e.objname, safe_dirs)
                except ObjectNotFound:
                    item = resolve.implicit_member(e, base, _ref(e)) if "/" in e.objname else None
                    if item is None:
                        raise
                else:
                    if e.start or e.length:
                        off, n = _apply_range(e.start, e.length, size, _ref(e))
                        item = Item(base, n, path, off)
                    else:
                        item = Item(base, size, path)
            else:
                name = base + ap if ap[0] == "/" else f"{base}/{ap}"
                item = resolve.member(e, name, e.objname, ap, _ref(e))
        except (ObjectNotFound, MemberNotFound) as exc:
            msg = (f"{ap} in {_ref(e)} does not exist" if isinstance(exc, MemberNotFound)
                   else f"{_ref(e)} does not exist")
            if not coer:
                raise NotFound(msg)
            soft += 1
            if soft > max_soft_errs:
                raise BadRequest(f"exceeded soft-errors limit: {soft} (max: {max_soft_errs}); "
                                 f"the last one: {msg}")
            name = base if not ap else (base + ap if ap[0] == "/" else f"{base}/{ap}")
            item = Item(MISSING_DIR + name, 0, err=msg)
        except InvalidName as exc:
            raise BadRequest(str(exc))
        except ArchiveError as exc:
            raise BadRequest(f"{_ref(e)}: cannot read archived file {ap!r}: {exc.reason}")
        append(item)
    return Plan(req, items, soft)


def _ref(e):
    return f"{e.provider}://{e.bucket}/{e.objname}"
