"""Resolve every entry of a validated request to a source of known size, in request order.

Everything that can fail deterministically fails here, before the status line: missing
buckets (404), missing objects or members without `coer` (404), ranges out of bounds
(416), shards that are not archives (400), too many soft errors (400). With `coer`, a
missing object or member becomes a zero-length `__404__/...` placeholder with `err_msg`.

An item's data is either a byte range of a file (plain objects, ranges, members of
uncompressed TAR and stored ZIP shards: served zero-copy) or a member that must be
decompressed (.tgz, .tar.lz4, deflated ZIP), read later in windows by assemble.py. Every
shard of one request charges what it decompresses to one InflateBudget (`max_inflate`), also
checked up front against what the planned members need at least, so a decompression bomb is
a 400 before the status line; members of compressed TAR shards in an InflateCache are plain
file ranges of the cache file (served zero-copy).
"""

from ..archive import (MAX_INFLATE, ArchiveError, InflateBudget, InflateLimit, MemberNotFound,
                       Shard)
from ..store.archived import find_archived
from ..store.attrs import identity_of_fd
from ..store.backend import BatchReader, Source
from ..store.errors import BucketNotFound, InvalidName, ObjectNotFound
from .errors import BadRequest, NotFound, RangeNotSatisfiable
from .items import Item, Items, base_name, member_name, output_name
from .request import Entries
from .seams import PlanItems, RemotePart

MISSING_DIR = "__404__/"
DEFAULT_MAX_SOFT_ERRS = 8


class Plan:
    """A request resolved: `items` (one per entry, in request order) and what reads them,
    the store's BatchReaders and, on a cluster's designated target, the `remote` part
    delivering the items other nodes send (cluster/gather.py)."""

    __slots__ = ("req", "items", "uuid", "_readers", "_remote", "_gfn", "_holes")

    def __init__(self, req, items: PlanItems, readers: "list[BatchReader]",
                 remote: RemotePart | None = None) -> None:
        self.req = req
        self.items = items
        self.uuid = ""   # the batch's id (batch/ids.py), given by whoever serves the plan
        self._readers = readers
        self._remote = remote
        self._gfn = self._holes = 0

    @property
    def gfn(self) -> int:
        """Entries read from a node other than their first owner (get-from-neighbour; a
        cluster's remote part counts them, a single node has none); kept once the plan closes."""
        remote = self._remote
        return self._gfn + (remote.gfn if remote is not None else 0)

    @property
    def holes(self) -> int:
        """Placeholders that stood in while sending for items no node could deliver (a
        cluster's remote part counts them); kept once the plan closes."""
        remote = self._remote
        return self._holes + (remote.holes if remote is not None else 0)

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
    def soft_errors(self) -> int:
        return sum(1 for it in self.items.fulls() if it.err is not None) + self.holes

    def release(self, items: "list[Item]") -> None:
        """Close the sources this plan opened for `items` (once they are sent)."""
        for it in items:
            it.release()

    def close(self) -> None:
        self.items.close()
        self._gfn, self._holes = self.gfn, self.holes
        remote, self._remote = self._remote, None
        readers, self._readers = self._readers, []
        if remote is not None:
            remote.close()
        for r in readers:
            r.close()


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
    """Per-request lookups through one BatchReader per backend."""

    def __init__(self, storage, n_entries, budget):
        self.storage = storage
        self.n = n_entries
        self.budget = budget
        self.readers = {}       # backend -> its BatchReader
        self.by_provider = {}   # provider -> the same readers

    def reader(self, provider, bucket):
        r = self.by_provider.get(provider)
        if r is None:
            backend = self.storage.backend(provider, bucket)
            r = self.readers.get(backend)
            if r is None:
                r = self.readers[backend] = backend.batch_reader(self.n, self.budget)
            self.by_provider[provider] = r
        return r

    def member(self, e, name, objname, archpath, ref):
        shard = self.reader(e.provider, e.bucket).shard(e.bucket, objname)
        m = shard.lookup(archpath)
        off, n = _apply_range(e.start, e.length, m.size, f"{archpath} in {ref}")
        extent = shard.extent(archpath)
        if extent is not None:
            # served from the shard's own open fd: no open per member
            return Item(name, n, shard, extent[0] + off)
        return Item(name, n, None, off, shard, archpath)

    def plan(self, req, items):
        return Plan(req, items, list(self.readers.values()))

    def prepare(self, req, providers):
        """Let remote backends start fetching what the request names before planning
        waits for the first item (local ones need no notice: their entries are not even
        grouped)."""
        remote = [(p, b) for p, b in providers if self.storage.backend(p, b).remote]
        if not remote:
            return
        wanted = {p for p, _ in remote}
        by = {}
        for e in req.entries:
            if e.provider in wanted:
                by.setdefault(e.provider, []).append(e)
        for p, entries in by.items():
            self.reader(p, entries[0].bucket).prepare(entries)

    def implicit_member(self, e, name):
        """`shard.tar/x.wav` named as one object that does not exist: the file x.wav inside
        the shard object shard.tar (store.archived has the rule, shared with object GET)."""
        reader = self.reader(e.provider, e.bucket)
        found = find_archived(e.objname,
                              lambda shard, path: reader.shard(e.bucket, shard).lookup(path))
        if found is None:
            return None
        _, shard_name, archpath = found
        return self.member(e, name, shard_name, archpath, f"{e.provider}://{e.bucket}/{shard_name}")


def build(req, storage, max_soft_errs=DEFAULT_MAX_SOFT_ERRS, checked=(), *,
          max_inflate=MAX_INFLATE) -> Plan:
    """Resolve `req` (a validated MossReq) against `storage` (a store Storage); `checked`:
    (provider, bucket) pairs the caller already found to exist; `max_inflate`: bytes the
    request may decompress (0: no limit)."""
    entries = req.entries
    named = ({(entries.provider, entries.bucket)} if type(entries) is Entries
             else {(e.provider, e.bucket) for e in entries})
    for provider, bucket in named.difference(checked):
        if not storage.backend(provider, bucket).has_bucket(bucket):
            raise BucketNotFound(bucket, provider)
    resolve = _Resolver(storage, len(req.entries), InflateBudget(max_inflate))
    items = Items(req.entries, req.onob)
    try:
        resolve.prepare(req, named)
        _resolve_all(req, resolve, items, max_soft_errs)
        _require_inflate(items, resolve.budget)
    except BaseException:
        resolve.plan(req, items).close()
        raise
    return resolve.plan(req, items)


def _require_inflate(items, budget):
    """400 now when the members to decompress certainly need more than the budget allows."""
    wanted = {}
    for it in items.fulls():
        if it.shard is not None:
            wanted.setdefault(id(it.shard), (it.shard, []))[1].append(
                (it.member, it.offset, it.size))
    need = 0
    try:
        for shard, reads in wanted.values():
            need += shard.inflate_cost(reads)
            budget.require(need, shard.name)
    except InflateLimit as exc:
        raise BadRequest(f"cannot read archived files: {exc}") from None


def _resolve_all(req, resolve, items, max_soft_errs):
    onob, coer = req.onob, req.coer
    append, add = items.append, items.add
    readers = resolve.by_provider  # a dict lookup per item, a call only for a new provider
    soft = 0
    for e in req.entries:
        ap = e.archpath
        try:
            if not ap:
                try:
                    reader = readers.get(e.provider) or resolve.reader(e.provider, e.bucket)
                    src = reader.source(e.bucket, e.objname)
                except ObjectNotFound:
                    base = base_name(e.bucket, e.objname, onob)
                    item = resolve.implicit_member(e, base) if "/" in e.objname else None
                    if item is None:
                        raise
                else:
                    if not (e.start or e.length) and (items.reader is None
                                                      or reader is items.reader):
                        # kept as a column of one reader (the first that offers it)
                        code = reader.slot(src, e.bucket, e.objname)
                        if code is not None:
                            items.reader = reader
                            add(code, src.size)
                            continue
                    base = base_name(e.bucket, e.objname, onob)
                    item = Item(base, src.size, src, owned=True)
                    append(item)  # listed before a range error can raise: the plan closes it
                    if e.start or e.length:
                        item.offset, item.size = _apply_range(e.start, e.length, src.size, _ref(e))
                    continue
            else:
                base = base_name(e.bucket, e.objname, onob)
                item = resolve.member(e, member_name(base, ap), e.objname, ap, _ref(e))
        except (ObjectNotFound, MemberNotFound) as exc:
            msg = (f"{ap} in {_ref(e)} does not exist" if isinstance(exc, MemberNotFound)
                   else f"{_ref(e)} does not exist")
            soft = count_soft_error(soft, msg, coer, max_soft_errs)
            item = placeholder(output_name(e, onob), msg)
        except InvalidName as exc:
            raise BadRequest(str(exc))
        except ArchiveError as exc:
            raise BadRequest(f"{_ref(e)}: cannot read archived file {ap!r}: {exc.reason}")
        append(item)


def identity(it):
    """ObjectAttrs naming the version item `it` is read from (see store.attrs.provably_same),
    or None where nothing can prove it: a placeholder, a source without an fd. A file inside
    a shard is named by its shard's version (of `it.size` bytes): the same version of a
    shard holds the same file, whether its bytes come from the shard or a cache of it."""
    src = it.src
    if isinstance(src, Source):
        try:
            fd = src.fileno()
        except OSError:
            return None   # gone since it was planned: sending it fails, its answer is cut
    else:
        shard = it.shard if it.shard is not None else src
        fd = shard.source_fd() if isinstance(shard, Shard) else None
    return None if fd is None or fd < 0 else identity_of_fd(fd, it.size)


def placeholder(name, msg):
    """The item standing for an entry that is missing (with `coer`): `__404__/<its name>`,
    empty, with `msg` as its err_msg."""
    return Item(MISSING_DIR + name, 0, err=msg)


def count_soft_error(soft, msg, coer, max_soft_errs):
    """The soft-error rule, for one more missing entry (`msg` says which) after `soft` of
    them: without `coer` a 404; beyond `max_soft_errs` a 400 naming it. Returns the new count."""
    if not coer:
        raise NotFound(msg)
    soft += 1
    if soft > max_soft_errs:
        raise BadRequest(f"exceeded soft-errors limit: {soft} (max: {max_soft_errs}); "
                         f"the last one: {msg}")
    return soft


def _ref(e):
    return f"{e.provider}://{e.bucket}/{e.objname}"
