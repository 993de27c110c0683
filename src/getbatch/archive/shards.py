"""`open_shard`: opens a shard with the reader its magic bytes call for."""
import os

from . import index as _index
from .formats import detect_format
from .inflate import InflateBudget
from .inflatecache import InflateCache
from .member import Shard
from .memory import ShardMemory
from .shardfile import adopt, identify
from .tarshard import CompressedTarShard, TarShard
from .zipshard import ZipShard


def open_shard(path_or_fd: str | os.PathLike[str] | int, *, name: str | None = None, version: str = "",
               index_dir: str | None = None, budget: InflateBudget | None = None,
               cache: InflateCache | None = None, length: int | None = None,
               memory: ShardMemory | None = None) -> Shard:
    """A Shard for the .tar, .tgz/.tar.gz, .tar.lz4 or .zip shard at a path or open on an fd.

    `path_or_fd`: a path, or an fd already open read-only, which the Shard takes over: it is
    closed by Shard.close(), and also here when opening fails.
    `name` names the shard in errors and breaks format ties by its extension (default: the
    path). `version`: the caller's version of the object (a per-object version counter, an
    ETag), part of the identity that every cached index is keyed by together with the fd's
    device, inode, size, mtime and ctime. `index_dir`, if given, is where shard indexes are
    persisted between processes. `budget`: an InflateBudget every decompressed byte is charged
    to (one per request: pass the same one to every shard a request opens). `cache`: an
    InflateCache for decompressed copies of .tgz and .tar.lz4 shards. `length`: the shard is
    the first `length` bytes of the file (default: all of it). `memory`: the ShardMemory its
    parsed index is kept in and found again (default: the library's, memory.DEFAULT).
    Raises NotAnArchive when the file is not a regular file or its bytes match no supported
    format. A shard opened before (same identity) costs an open, an fstat, a pread of its
    first block and an fstat.
    """
    fd, path, label = adopt(path_or_fd, name)
    try:
        identify(fd, label, "", length)  # a directory, FIFO or device: NotAnArchive now
        fmt = detect_format(os.pread(fd, min(512, length if length is not None else 512), 0),
                            name=label)
    except BaseException:
        os.close(fd)
        raise
    # the reader owns the fd from here on, closing it itself if it fails
    shard: Shard
    if fmt == "tar":
        shard = TarShard(fd, name=label, version=version, index_dir=index_dir, length=length,
                         memory=memory)
    elif fmt == "zip":
        shard = ZipShard(fd, name=label, version=version, index_dir=index_dir, length=length,
                         memory=memory)
    else:
        shard = CompressedTarShard(fd, name=label, version=version, index_dir=index_dir,
                                   format=fmt, length=length, memory=memory)
    shard.path = path
    shard.budget = budget
    shard.cache = cache
    return shard


def index_state(fd: int, *, name: str, version: str = "", index_dir: str | None = None,
                memory: ShardMemory | None = None) -> tuple[str, int]:
    """(state, members) of the shard open on `fd` (not taken over) without building anything:
    "fresh" with its member count when a persisted index of this very version is in
    `index_dir` (a .zip always: its central directory is its index), "stale" when the one
    there is of another version or unusable, "none" when there is none. NotAnArchive when the
    bytes are no shard. `memory`: as open_shard's (a .zip's directory is parsed into it)."""
    ident = identify(fd, name, version)
    fmt = detect_format(os.pread(fd, 512, 0), name=name)
    if fmt == "zip":
        with ZipShard(os.dup(fd), name=name, version=version, memory=memory) as shard:
            return "fresh", len(shard.members())
    state, idx = _index.persisted(fd, ident, fmt, index_dir)
    return state, len(idx) if idx is not None else 0
