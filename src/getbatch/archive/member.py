"""The shard-format-neutral description of one archive entry, and the Shard interface.

Every reader (TAR, compressed TAR, ZIP) returns `Member` records and implements
`Shard`, so the batch layer never looks at formats.
"""
import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, NamedTuple, TypeVar

from .errors import CorruptArchive
from .shardfile import Identity, adopt, identify

if TYPE_CHECKING:   # for annotations only: inflatecache imports this module
    from .inflate import InflateBudget
    from .memory import ShardMemory
    from .inflatecache import InflateCache

# Member kinds. Only FILE members are ever read as data.
FILE = "file"
DIR = "dir"
SYMLINK = "symlink"
HARDLINK = "hardlink"
OTHER = "other"

CHUNK = 1 << 20  # the most bytes iter_member yields at once
# Longest member name accepted, in bytes (PATH_MAX). A longer one makes the shard corrupt: a
# hostile archive must not make a reader hold or index megabytes of name per member.
NAME_MAX = 4096

_V = TypeVar("_V")
_S = TypeVar("_S", bound="Shard")


class Member(NamedTuple):
    name: str        # as stored in the archive (after PAX/GNU long-name resolution)
    offset: int      # data offset: in the shard file (tar, zip stored: of the member data),
                     # or in the decompressed stream (tgz, tar.lz4)
    size: int        # uncompressed size in bytes
    kind: str = FILE
    method: int = 0  # ZIP compression method (0 stored, 8 deflated); 0 for TAR
    csize: int = -1  # ZIP compressed size; -1 for TAR
    crc: int = -1    # ZIP CRC-32; -1 for TAR


def name_variants(name: str) -> list[str]:
    """Names under which a lookup of `name` also finds a member.

    Archives made with `tar -C dir .` store `./x`; some tools store `/x`. A lookup
    tries the exact name first, then these, so `x`, `./x` and `/x` all find each other.
    """
    bare = name
    while bare.startswith("./"):
        bare = bare[2:]
    bare = bare.lstrip("/")
    out = [bare, "./" + bare, "/" + bare]
    return [n for n in out if n != name]


def member_range(m: Member, offset: int, length: int | None) -> tuple[int, int]:
    """(offset, count) of the sub-range of member `m` that starts at `offset` and holds `length`
    bytes (None: to the end); ValueError when it does not fit in the member."""
    if length is None:
        length = m.size - offset
    if offset < 0 or length < 0 or offset + length > m.size:
        raise ValueError(f"range [{offset}, {offset}+{length}) outside {m.name} ({m.size} bytes)")
    return offset, length
def find_variant(table: dict[str, _V], name: str) -> tuple[str, _V] | None:
    """(key, value) of `name` in `table` (a dict keyed by member name), else of the first of
    its name_variants present; None when neither is."""
    value = table.get(name)
    if value is not None:
        return name, value
    for alt in name_variants(name):
        value = table.get(alt)
        if value is not None:
            return alt, value
    return None


class Shard:
    """An opened input archive. Subclasses: TarShard, CompressedTarShard, ZipShard.

    Duplicate member names: the FIRST regular file of that name wins (as GNU tar
    extraction order and AIStore's shard index agree on for lookups).

    Small members are read whole (`read`, `read_many`); any member can be streamed in bounded
    memory (`iter_member`), which is how big members and decompression bombs are read.

    A reader (subclass) takes its file with `_attach` (a path or fd) or `_adopt` (an fd and
    identity it has already), overrides `_let_go` to drop its parsed index on close, and
    `_release` when its fd belongs to something else that must close it.
    """

    format: str            # "tar", "tgz", "tar.lz4" or "zip"
    path: str | None       # None when opened from an fd
    name: str              # names the shard in errors
    # shardfile.Identity of the version being read (None only until _attach or _adopt)
    identity: Identity = None  # type: ignore[assignment]
    _fd = -1               # the shard file, open while the Shard is
    # Set by open_shard. budget: an archive.inflate.InflateBudget every decompressed byte is
    # charged to (None: no limit). cache: the InflateCache compressed TAR shards keep their
    # decompressed copies in (None: none).
    budget: "InflateBudget | None" = None
    cache: "InflateCache | None" = None
    memory: "ShardMemory"  # where its parsed index is kept (memory.py), set by the reader

    def _attach(self, path_or_fd: int | str | os.PathLike[str], name: str | None, version: str,
                length: int | None = None) -> None:
        """Take over the shard file (a path to open, or an open fd) and learn its identity.
        On failure the fd is closed, even one the caller handed over."""
        self._fd, self.path, self.name = adopt(path_or_fd, name)
        try:
            self.identity = identify(self._fd, self.name, version, length)
        except BaseException:
            self.close()
            raise

    def _adopt(self, fd: int, name: str, identity: Identity) -> None:
        """Read the shard from `fd` (no path), whose identity the reader knows already."""
        self._fd, self.path, self.name, self.identity = fd, None, name, identity

    def members(self) -> list[Member]:
        """Every entry in archive order, directories and links included."""
        raise NotImplementedError

    def lookup(self, name: str) -> Member:
        """The regular-file member called `name` (or ./name, /name); raises MemberNotFound."""
        raise NotImplementedError

    def extent(self, name: str) -> tuple[int, int] | None:
        """(offset, size) of the member's bytes inside the shard file when they are stored
        uncompressed there (plain TAR, ZIP stored), so they can be served with pread/sendfile;
        None otherwise. Raises MemberNotFound."""
        raise NotImplementedError

    def read(self, name: str) -> bytes:
        return self.read_many([name])[0]

    def read_many(self, names: Iterable[str]) -> list[bytes]:
        """Bytes of each named member, in the caller's order (duplicates allowed).
        Compressed shards are decompressed at most once per call. Each member is held whole:
        for small members; stream big ones with iter_member."""
        raise NotImplementedError

    def iter_member(self, name: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """The bytes [offset, offset+length) of a member (length None: to its end) as an
        iterator of bytes chunks of at most CHUNK bytes, in memory bounded whatever the member's
        size. Lookup and range errors raise here; errors in the data (CorruptArchive, e.g. a
        CRC-32 mismatch found at the end, InflateLimit) raise while iterating, possibly after
        chunks went out: the consumer must then treat what it sent as incomplete."""
        raise NotImplementedError

    def inflate_cost(self, reads: Iterable[tuple[str, int, int | None]]) -> int:
        """At least how many bytes reading each of `reads`, (name, offset, length) as
        iter_member takes them, decompresses (0 for plain TAR, stored ZIP members and cached
        shards): for a planner to compare with its budget before it commits to a response."""
        return 0

    def fileno(self) -> int:
        """The fd `extent()` ranges refer to (the shard file itself, or for a compressed TAR
        shard served from the inflate cache, its cache file), for pread/sendfile."""
        return self._fd

    def source_fd(self) -> int:
        """The fd of the shard file itself (never a cache of it): what its version (checksum,
        stamp) is read from; -1 once closed."""
        return self._fd

    def file_chunks(self, offset: int, length: int) -> Iterator[bytes]:
        """`length` bytes of the shard file from `offset`, in chunks of at most CHUNK bytes."""
        while length > 0:
            data = os.pread(self._fd, min(length, CHUNK), offset)
            if not data:
                raise CorruptArchive(self.name, f"truncated: member data at {offset} is past the "
                                                "end of the file (shard changed after indexing?)")
            yield data
            offset += len(data)
            length -= len(data)

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            self._release(fd)
        self._let_go()

    def _release(self, fd: int) -> None:
        """Close the shard file."""
        os.close(fd)

    def _let_go(self) -> None:
        """Drop this shard's references to its parsed index: a closed shard that a finished
        request still holds must not keep an index the cache evicted alive (memory.py).
        Lookups on a closed shard then find nothing."""

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
