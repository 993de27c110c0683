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
import itertools
import os
import threading
from array import array

import msgspec

from ..archive import (MAX_INFLATE, ArchiveError, InflateBudget, InflateLimit, MemberNotFound,
                       Shard)
from ..store.archived import find_archived
from ..store.attrs import identity_of_fd
from ..store.backend import Source
from ..store.errors import BucketNotFound, InvalidName, ObjectNotFound
from .errors import BadRequest, NotFound, RangeNotSatisfiable
from .request import Entries

MISSING_DIR = "__404__/"
DEFAULT_MAX_SOFT_ERRS = 8


class Item(msgspec.Struct, gc=False):
    """One output entry. `src` + `offset` for data read from an fd or a store Source (`src`
    is a Source, or a Shard whose `fileno()` holds the member's bytes at `offset`); `shard`
    + `member` for data to decompress (then `offset` is relative to the member); `remote`
    for an item another node sends; none of them for a placeholder. `owned`: `src` is a
    Source this plan closes once the item is sent. Untracked by the cyclic GC (it holds no
    cycles), so big plans trigger no collections."""

    name: str
    size: int
    src: object = None
    offset: int = 0
    shard: object = None
    member: object = None
    err: object = None          # err_msg of a placeholder
    owned: bool = False
    remote: object = None       # on a cluster DT: what delivers the item (then `offset` is its
                                # index in the request), see cluster/gather.py


# what Items.fds holds for an entry besides an open fd
LAZY = -1      # found, opened only when sent
CLOSED = -2    # sent (or the plan closed): its fd is closed
FULL = -3      # an Item of its own, in Items.full


class Items:
    """A plan's items, in request order, without an object per entry.

    A whole object of the local store (most entries of most batches) costs 12 bytes here:
    its fd (or LAZY: opened when sent) and its size, in arrays; its name follows from its
    request entry. Everything else (members, ranges, placeholders, other backends) is a full
    Item. Indexing and iteration build each Item when asked, whose `src` (a `Slot`) reads and
    updates the arrays, so the output holds Items only one window at a time."""

    __slots__ = ("entries", "onob", "reader", "fds", "sizes", "full")

    def __init__(self, entries, onob):
        self.entries = entries
        self.onob = onob
        self.reader = None      # the one BatchReader whose sources are kept as columns
        self.fds = array("i")
        self.sizes = array("q")
        self.full = {}          # index -> Item

    def __len__(self):
        return len(self.fds)

    def append(self, item):
        self.full[len(self.fds)] = item
        self.fds.append(FULL)
        self.sizes.append(0)

    def add(self, code, size):
        """A whole object of `self.reader`: `code` an fd this plan now owns, or LAZY."""
        self.fds.append(code)
        self.sizes.append(size)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self.fds)))]
        code = self.fds[i]
        if code == FULL:
            return self.full[i % len(self.fds)]
        size = self.sizes[i]
        return Item(self._name(i), size, Slot(self, i % len(self.fds), size),
                    owned=code != CLOSED)

    def _name(self, i):
        entries = self.entries
        if type(entries) is Entries:   # no MossIn built
            return base_name(entries.bucket, entries.names[i], self.onob)
        e = entries[i]
        return base_name(e.bucket, e.objname, self.onob)

    def __iter__(self):
        for i in range(len(self.fds)):
            yield self[i]

    def names_sizes(self):
        """(name, size) of every item, without building Items."""
        full, sizes, name = self.full, self.sizes, self._name
        if not full and type(self.entries) is Entries:
            names, bucket, onob = self.entries.names, self.entries.bucket, self.onob
            yield from ((base_name(bucket, n, onob), size) for n, size in zip(names, sizes))
            return
        for i in range(len(sizes)):
            it = full.get(i)
            yield (it.name, it.size) if it is not None else (name(i), sizes[i])

    def fulls(self):
        return self.full.values()

    def close(self):
        fds = self.fds
        for i, code in enumerate(fds):
            if code >= 0:
                fds[i] = CLOSED
                os.close(code)
        for it in self.full.values():
            if it.owned:
                it.src.close()
                it.owned = False


class Slot(msgspec.Struct, Source, gc=False):
    """The store Source of a column entry of Items: its fd lives in the arrays, so every
    Item built for the entry sees it opened or closed once."""

    items: Items
    i: int
    size: int

    @property
    def lazy(self):
        return self.items.fds[self.i] == LAZY

    def fileno(self):
        items, i = self.items, self.i
        code = items.fds[i]
        if code == LAZY:
            e = items.entries[i]
            code = items.fds[i] = items.reader.open_found(e.bucket, e.objname)
        elif code < 0:
            raise ValueError(f"item {i} was already sent: its file is closed")
        return code

    def pread(self, length, offset):
        return os.pread(self.fileno(), length, offset)

    def close(self):
        items, i = self.items, self.i
        code = items.fds[i]
        if code != FULL:
            items.fds[i] = CLOSED
            if code >= 0:
                os.close(code)


def _fulls(items):
    """The items that may be anything but a whole object (all of them in a plain list);
    `items` an Items, a list, or a cluster DT's items (gather.Items)."""
    fulls = getattr(items, "fulls", None)
    return items if fulls is None else fulls()


BATCH_ID_PREFIX = "gbt-"
_ids = itertools.count(1)
_id_lock = threading.Lock()
_id_prefix = None


def new_batch_id():
    """A batch id unique on this node: a random prefix per process (drawn again after a fork)
    and a counter; cheaper than uuid4 (a getrandom syscall per request)."""
    global _id_prefix
    with _id_lock:
        if _id_prefix is None or _id_prefix[0] != os.getpid():
            _id_prefix = (os.getpid(), os.urandom(4).hex())
        return f"{BATCH_ID_PREFIX}{_id_prefix[1]}{next(_ids):x}"


class Plan:
    __slots__ = ("req", "items", "uuid", "_readers", "_gfn", "_holes")

    def __init__(self, req, items, readers):
        self.req = req
        self.items = items          # one per request entry, in request order
        self.uuid = new_batch_id()
        self._readers = readers
        self._gfn = self._holes = 0

    @property
    def gfn(self):
        """Entries read from a node other than their first owner (get-from-neighbour; a
        cluster's reader counts them, a single node has none); kept once the plan closes."""
        return self._gfn + sum(getattr(r, "gfn", 0) for r in self._readers)

    @property
    def holes(self):
        """Placeholders that stood in while sending for items no node could deliver (a
        cluster's reader counts them); kept once the plan closes."""
        return self._holes + sum(getattr(r, "holes", 0) for r in self._readers)

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
    def soft_errors(self):
        return sum(1 for it in _fulls(self.items) if it.err is not None) + self.holes

    def release(self, items):
        """Close the sources this plan opened for `items` (once they are sent)."""
        for it in items:
            if it.owned:
                it.src.close()
                it.owned = False

    def close(self):
        close = getattr(self.items, "close", None)
        if close is not None:
            close()
        else:
            self.release(self.items)
        self._gfn, self._holes = self.gfn, self.holes
        readers, self._readers = self._readers, []
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
    for it in _fulls(items):
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
                    if not (e.start or e.length):
                        if items.reader is None and hasattr(reader, "slot"):
                            items.reader = reader
                        if reader is items.reader:
                            code = reader.slot(src, e.bucket, e.objname)
                            if code is not None:
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
        fd = src.fileno()
    else:
        shard = it.shard if it.shard is not None else src
        fd = shard.source_fd() if isinstance(shard, Shard) else None
    return None if fd is None or fd < 0 else identity_of_fd(fd, it.size)


def base_name(bucket, objname, onob):
    """An object's name in the output archive: `bucket/objname`, or the object name alone
    with `onob` (AIS's only_obj_name)."""
    return objname if onob else f"{bucket}/{objname}"


def member_name(base, archpath):
    """The output name of a member: its shard's name, then the archpath (`/x` joins as is)."""
    return base + archpath if archpath[0] == "/" else f"{base}/{archpath}"


def output_name(e, onob):
    """The name entry `e` has in the output archive (`onob`: without its bucket), whichever
    node reads it."""
    base = base_name(e.bucket, e.objname, onob)
    return member_name(base, e.archpath) if e.archpath else base


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
