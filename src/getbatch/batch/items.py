"""A plan's items: one `Item` per output entry, kept in request order by `Items`.

`Item` says where an entry's bytes come from (see its docstring); `Items` keeps a batch's
items without an object per entry (most entries are whole local objects: an fd and a size in
arrays; on a cluster's designated target, items other nodes send: a size), the one such type
for a node's plan and a DT's merge; the naming rules give each entry its name in the output
archive whichever node reads it. seams.py declares what an Item's parts must offer.
"""
from __future__ import annotations

import os
from array import array
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, overload

import msgspec

from ..archive import Shard
from ..store.backend import Source
from .request import Entries

if TYPE_CHECKING:
    from .seams import RemotePart


class Item(msgspec.Struct, gc=False):
    """One output entry. `src` + `offset` for data read from an fd or a store Source (`src`
    is a Source, or a Shard whose `fileno()` holds the member's bytes at `offset`); `shard`
    + `member` for data to decompress (then `offset` is relative to the member); `remote`
    for an item another node sends; none of them for a placeholder. `owned`: `src` is a
    Source this plan closes once the item is sent. Untracked by the cyclic GC (it holds no
    cycles), so big plans trigger no collections."""

    name: str
    size: int
    src: Source | Shard | None = None
    offset: int = 0
    shard: Shard | None = None
    member: str = ""                # with `shard`: the member's name in it
    err: str | None = None          # err_msg of a placeholder
    owned: bool = False
    remote: RemotePart | None = None   # on a cluster DT: what delivers the item (then
                                       # `offset` is its index in the request)

    def release(self) -> None:
        """Close the Source the plan opened for this item (once it is sent); nothing when
        the plan owns none."""
        if self.owned:   # then `src` is a store Source
            self.src.close()  # type: ignore[union-attr]
            self.owned = False

    @property
    def unopened(self) -> bool:
        """Its data is in a store Source that opens only when first read (past the fd
        budget): nothing to warm or hash ahead."""
        src = self.src
        return self.owned and isinstance(src, Source) and src.lazy


# what Items.fds holds for an entry besides an open fd
LAZY = -1      # found, opened only when sent
CLOSED = -2    # sent (or the plan closed): its fd is closed
FULL = -3      # an Item of its own, in Items.full
REMOTE = -4    # delivered by Items.remote (its size in Items.sizes)
UNPLANNED = -5 # not planned yet (a cluster DT's merge, while it locates entries)


class Items:
    """A plan's items, in request order, without an object per entry.

    A whole object of the local store (most entries of most batches) costs 12 bytes here:
    its fd (or LAZY: opened when sent) and its size, in arrays; its name follows from its
    request entry. So does an item another node sends, on a cluster's designated target (its
    size, and REMOTE: `remote` delivers it). Everything else (members, ranges, placeholders,
    other backends) is a full Item. Indexing and iteration build each Item when asked, whose
    `src` (a `Slot`) reads and updates the arrays, so the output holds Items only one window
    at a time.

    A single node's plan appends its items in order (`add`, `append`); a cluster's merge
    starts with `n` entries not planned yet (see `planned`) and sets each where it is
    found (`__setitem__`, `adopt`)."""

    __slots__ = ("entries", "onob", "reader", "remote", "fds", "sizes", "full")

    def __init__(self, entries: Any, onob: bool, n: int = 0,
                 remote: RemotePart | None = None) -> None:
        self.entries = entries
        self.onob = onob
        self.reader: Any = None     # the one BatchReader whose sources are kept as columns
        self.remote = remote        # what delivers the REMOTE entries
        self.fds = array("i", [UNPLANNED]) * n
        self.sizes = array("q", bytes(8 * n))
        self.full: dict[int, Item] = {}

    def __len__(self) -> int:
        return len(self.fds)

    def append(self, item: Item) -> None:
        self.full[len(self.fds)] = item
        self.fds.append(FULL)
        self.sizes.append(0)

    def add(self, code: int, size: int) -> None:
        """A whole object of `self.reader`: `code` an fd this plan now owns, or LAZY."""
        self.fds.append(code)
        self.sizes.append(size)

    def __setitem__(self, i: int, item: Item) -> None:
        """Entry `i` is `item` (kept as a column when it is one `remote` delivers)."""
        if item.remote is not None and item.remote is self.remote and item.err is None \
                and item.offset == i:
            self.full.pop(i, None)
            self.fds[i] = REMOTE
            self.sizes[i] = item.size
        else:
            self.full[i] = item
            self.fds[i] = FULL

    def adopt(self, i: int, other: Items, j: int) -> None:
        """Entry `i` is item `j` of `other` (a plan of some entries of the same request):
        a whole object moves over as a column (this plan closes it then), anything else is
        kept as the Item `other` gives."""
        code = other.fds[j]
        if code in (FULL, REMOTE, UNPLANNED) or self.reader not in (None, other.reader):
            self[i] = other[j]
            return
        self.full.pop(i, None)
        self.reader = other.reader
        self.fds[i], self.sizes[i] = code, other.sizes[j]
        other.fds[j] = CLOSED

    @overload
    def __getitem__(self, i: int) -> Item: ...

    @overload
    def __getitem__(self, i: slice) -> list[Item]: ...

    def __getitem__(self, i: int | slice) -> Item | list[Item]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self.fds)))]
        code = self.fds[i]
        if code == FULL:
            return self.full[i % len(self.fds)]
        size = self.sizes[i]
        if code == REMOTE:
            return Item(self._name(i), size, remote=self.remote, offset=i % len(self.fds))
        if code == UNPLANNED:
            raise LookupError(f"entry {i} is not planned yet")
        return Item(self._name(i), size, Slot(self, i % len(self.fds), size),
                    owned=code != CLOSED)

    def planned(self, i: int) -> bool:
        """Whether entry `i` has an item yet."""
        return self.fds[i] != UNPLANNED

    def _name(self, i: int) -> str:
        entries = self.entries
        if type(entries) is Entries:   # no MossIn built
            return base_name(entries.bucket, entries.names[i], self.onob)
        return output_name(entries[i], self.onob)

    def __iter__(self) -> Iterator[Item]:
        for i in range(len(self.fds)):
            yield self[i]

    def names_sizes(self) -> Iterator[tuple[str, int]]:
        """(name, size) of every item, without building Items."""
        full, sizes, name = self.full, self.sizes, self._name
        if not full and type(self.entries) is Entries:
            names, bucket, onob = self.entries.names, self.entries.bucket, self.onob
            yield from ((base_name(bucket, n, onob), size) for n, size in zip(names, sizes))
            return
        for i in range(len(sizes)):
            it = full.get(i)
            yield (it.name, it.size) if it is not None else (name(i), sizes[i])

    def fulls(self) -> Iterable[Item]:
        """The items that may be anything but a whole local object."""
        return self.full.values()

    def placeholders(self) -> Iterator[tuple[int, str]]:
        """(index, err_msg) of every placeholder, in request order."""
        full = self.full
        for i in sorted(full):
            err = full[i].err
            if err is not None:
                yield i, err

    def close(self) -> None:
        fds = self.fds
        for i, code in enumerate(fds):
            if code >= 0:
                fds[i] = CLOSED
                os.close(code)
        for it in self.full.values():
            it.release()


class Slot(msgspec.Struct, Source, gc=False):
    """The store Source of a column entry of Items: its fd lives in the arrays, so every
    Item built for the entry sees it opened or closed once."""

    items: Items
    i: int
    size: int

    @property
    def lazy(self) -> bool:   # type: ignore[override]
        return self.items.fds[self.i] == LAZY

    def fileno(self) -> int:
        items, i = self.items, self.i
        code = items.fds[i]
        if code == LAZY:
            e = items.entries[i]
            code = items.fds[i] = items.reader.open_found(e.bucket, e.objname)
        elif code < 0:
            raise ValueError(f"item {i} was already sent: its file is closed")
        return code

    def pread(self, length: int, offset: int) -> bytes:
        return os.pread(self.fileno(), length, offset)

    def close(self) -> None:
        items, i = self.items, self.i
        code = items.fds[i]
        if code != FULL:
            items.fds[i] = CLOSED
            if code >= 0:
                os.close(code)


def base_name(bucket: str, objname: str, onob: bool) -> str:
    """An object's name in the output archive: `bucket/objname`, or the object name alone
    with `onob` (AIS's only_obj_name)."""
    return objname if onob else f"{bucket}/{objname}"


def member_name(base: str, archpath: str) -> str:
    """The output name of a member: its shard's name, then the archpath (`/x` joins as is)."""
    return base + archpath if archpath[0] == "/" else f"{base}/{archpath}"


def output_name(e: Any, onob: bool) -> str:
    """The name entry `e` has in the output archive (`onob`: without its bucket), whichever
    node reads it."""
    base = base_name(e.bucket, e.objname, onob)
    return member_name(base, e.archpath) if e.archpath else base
