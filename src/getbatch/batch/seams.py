"""The seams of a GetBatch: what planning, assembly and a cluster's gather expect of each other.

Where a GetBatch goes (server/moss.py drives it):
- planned: `cluster.gather.Gather.plan` (a cluster's designated target; alone, it calls
  `plan.build`, the single node's planner, which also plans each node's share) makes a
  `plan.Plan`: its `items` (a `PlanItems`, in request order), the store's
  `BatchReader`s the items were read through, and on a cluster the `RemotePart` that
  delivers the items other nodes send;
- assembled: `assemble.BatchOutput` turns each item into one segment
  (`assemble.segment`, the one place that tells item kinds apart; an item with `remote` set
  asks its RemotePart) and writes it to the client socket (the emit loop) or through an
  archive writer (the byte iterator, and integrity.py's checksummed one);
- sent: server/wrappers.py hands a plain-TAR output to the emit loop on the client socket
  (`BatchOutput.emit_to`); anything else, and any other WSGI server, iterates it.

Nothing here has behaviour: the Protocols name what each side relies on, so that a type
checker, and a reader, can follow the calls without guessing from attribute probes.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, overload

if TYPE_CHECKING:
    from .items import Item

# The segment kinds: what an item's bytes are, as (kind, payload), for any sink.
FILE = 0     # payload: a Source or Shard whose fd holds the item's bytes at the item's offset
HELD = 1     # payload: the item's bytes (a bytes-like object, valid until the next flush)
STREAM = 2   # payload: an iterator of bytes-like chunks, the item's bytes in order
EMPTY = 3    # payload: None; a zero-length entry under the item's name (a placeholder)
HOLE = 4     # payload: (name, frame): a placeholder standing, after the status line, for an
             # item no node delivered: `name` for a writer, `frame` the TAR frame of exactly
             # the item's announced length for the emit loop (None: none fits)
Segment = tuple[int, Any]

Flush = Callable[[], None]
"""Sends what the emit loop has queued: called by a RemotePart before the views it handed
out stop being valid (None on the iterated path, which copies as it writes)."""


class PlanItems(Protocol):
    """A plan's items in request order: batch.items.Items, for one node's plan and for a
    cluster DT's merge of its own and its peers' items alike."""

    def __len__(self) -> int: ...

    @overload
    def __getitem__(self, i: int) -> Item: ...

    @overload
    def __getitem__(self, i: slice) -> list[Item]: ...

    def __iter__(self) -> Iterator[Item]: ...

    def names_sizes(self) -> Iterable[tuple[str, int]]:
        """(name, size) of every item, in order (the output's length is known from them)."""
        ...

    def fulls(self) -> Iterable[Item]:
        """Every item that may be anything but a whole local object (placeholders, members,
        ranges): what counts soft errors and decompression."""
        ...

    def close(self) -> None:
        """Close every source the items still hold open."""
        ...


class RemotePart(Protocol):
    """What delivers the items other nodes send (cluster.gather.Gather). An Item whose
    `remote` is set is entry `offset` of the request; its bytes come from here."""

    gfn: int      # entries read from a node other than their first owner
    holes: int    # placeholders that stood in, while sending, for items no node delivered

    def segment(self, it: Item, flush: Flush | None) -> Segment:
        """Item `it`'s bytes as one segment: HELD or STREAM, or HOLE when no node could
        deliver it (raises HoleError where no placeholder may stand)."""
        ...

    def close(self) -> None:
        """Drop whatever the delivery holds (connections to peers, this node's share)."""
        ...
