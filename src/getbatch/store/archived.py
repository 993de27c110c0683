"""Files inside shard objects: `ShardFile` (one archived file open for reading) and the
`shard.tar/x.wav` naming rule.

`shard.tar/x.wav` named as one object is the file x.wav inside the shard object shard.tar.
Lhotse URLs and the SDK's plain name lists write archived files this way, with no
`archpath`. GetBatch, object GET and HEAD resolve such a name with this one rule: only
after the name itself was not found, try each `/` whose left part has a shard extension
(.tar, .tgz, .tar.gz, .tar.lz4, .zip), the shortest first; the first existing shard that
holds the rest as a regular file wins.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

from ..archive import MemberNotFound, Shard
from ..archive.formats import format_from_name
from .errors import ObjectNotFound

T = TypeVar("T")


class ArchivedFile:
    """One regular file inside a shard, open for reading front to back: `size`, `chunks()`
    (its bytes in pieces of at most 1 MiB; errors in the data raise while iterating, possibly
    after chunks went out) and `close()`. `Backend.open_archived` returns one."""

    size = 0

    def chunks(self) -> Iterator[bytes]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> ArchivedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ShardFile(ArchivedFile):
    """A file of a shard open here (the shard is taken over: closed with this)."""

    def __init__(self, shard: Shard, archpath: str, size: int) -> None:
        self.shard = shard
        self.archpath = archpath
        self.size = size

    def chunks(self) -> Iterator[bytes]:
        return self.shard.iter_member(self.archpath)

    def close(self) -> None:
        self.shard.close()


def open_shard_file(shard: Shard, archpath: str, ref: str, check_budget: bool = True) -> ShardFile:
    """ShardFile of `archpath` in `shard` (taken over: closed on error too), once what
    reading it decompresses was checked against the shard's budget (unless `check_budget` is
    false: for its size alone); MemberNotFound names the shard as `ref`
    (provider://bucket/name)."""
    try:
        try:
            m = shard.lookup(archpath)
        except MemberNotFound:
            raise MemberNotFound(ref, archpath) from None
        if check_budget and shard.budget is not None:
            shard.budget.require(shard.inflate_cost([(archpath, 0, None)]), shard.name)
        return ShardFile(shard, archpath, m.size)
    except BaseException:
        shard.close()
        raise


def archive_splits(name: str, *, empty_rest: bool = False) -> Iterator[tuple[str, str]]:
    """(shard name, rest) for each `/` in `name` whose left part has a shard extension, the
    shortest first; `empty_rest`: also when nothing follows the `/`."""
    i = name.find("/")
    while i > 0:
        rest = name[i + 1:]
        if (rest or empty_rest) and format_from_name(name[:i]) is not None:
            yield name[:i], rest
        i = name.find("/", i + 1)


def find_archived(name: str, probe: Callable[[str, str], T]) -> tuple[T, str, str] | None:
    """(probe's result, shard name, archpath) for the file `name` names inside a shard, or
    None.

    `probe(shard_name, archpath)` looks the file up (and opens or measures it); it raises
    ObjectNotFound when there is no such shard and MemberNotFound when the shard does not
    hold the file, and the next split is tried. Other errors (a shard that is not a readable
    archive) propagate: the name does point into it."""
    for shard_name, archpath in archive_splits(name):
        try:
            return probe(shard_name, archpath), shard_name, archpath
        except (ObjectNotFound, MemberNotFound):
            continue
    return None
