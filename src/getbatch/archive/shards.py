"""`open_shard`: opens a shard with the reader its magic bytes call for."""
import os

from .formats import detect_format
from .shardfile import adopt, identify
from .tarshard import CompressedTarShard, TarShard
from .zipshard import ZipShard


def open_shard(path_or_fd, *, name=None, version="", index_dir=None, budget=None, cache=None):
    """A Shard for the .tar, .tgz/.tar.gz, .tar.lz4 or .zip shard at a path or open on an fd.

    `path_or_fd`: a path, or an fd already open read-only, which the Shard takes over: it is
    closed by Shard.close(), and also here when opening fails.
    `name` names the shard in errors and breaks format ties by its extension (default: the
    path). `version`: the caller's version of the object (a per-object version counter, an
    ETag), part of the identity that every cached index is keyed by together with the fd's
    device, inode, size, mtime and ctime. `index_dir`, if given, is where shard indexes are
    persisted between processes. `budget`: an InflateBudget every decompressed byte is charged
    to (one per request: pass the same one to every shard a request opens). `cache`: an
    InflateCache for decompressed copies of .tgz and .tar.lz4 shards.
    Raises NotAnArchive when the file is not a regular file or its bytes match no supported
    format. A shard opened before (same identity) costs an open, an fstat, a pread of its
    first block and an fstat.
    """
    fd, path, label = adopt(path_or_fd, name)
    try:
        identify(fd, label)  # a directory, FIFO or device is NotAnArchive before any read
        fmt = detect_format(os.pread(fd, 512, 0), name=label)
    except BaseException:
        os.close(fd)
        raise
    # the reader owns the fd from here on, closing it itself if it fails
    if fmt == "tar":
        shard = TarShard(fd, name=label, version=version, index_dir=index_dir)
    elif fmt == "zip":
        shard = ZipShard(fd, name=label, version=version, index_dir=index_dir)
    else:
        shard = CompressedTarShard(fd, name=label, version=version, index_dir=index_dir,
                                   format=fmt)
    shard.path = path
    shard.budget = budget
    shard.cache = cache
    return shard
