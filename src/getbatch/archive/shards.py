"""`open_shard`: opens a shard with the reader its magic bytes call for."""
import os

from .errors import NotAnArchive
from .formats import detect_format
from .tarshard import CompressedTarShard, TarShard


def open_shard(path, *, index_dir=None, name=None, budget=None, cache=None):
    """A Shard for the .tar, .tgz/.tar.gz, .tar.lz4 or .zip file at `path`.

    `name` names the shard in errors and breaks format ties by its extension (default: path);
    `index_dir`, if given, is where shard indexes are persisted between processes; `budget`, an
    InflateBudget every decompressed byte is charged to (one per request: pass the same one to
    every shard a request opens); `cache`, an InflateCache for decompressed copies of .tgz and
    .tar.lz4 shards. Raises NotAnArchive when the bytes match no supported format. A shard
    opened before (same file, size and mtime) costs an open, a pread of its first block and an
    fstat.
    """
    shard = _open(path, index_dir, name)
    shard.budget = budget
    shard.cache = cache
    return shard


def _open(path, index_dir, name):
    path = os.fspath(path)
    label = name if name is not None else path
    # one fd serves detection and reading: no second open of the same file
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        head = os.pread(fd, 512, 0)
        fmt = detect_format(head, name=label)
    except IsADirectoryError:
        os.close(fd)
        raise NotAnArchive(label, "is a directory") from None
    except BaseException:
        os.close(fd)
        raise
    # the readers own the fd from here on, closing it themselves if they fail
    if fmt == "tar":
        return TarShard(path, index_dir=index_dir, name=name, fd=fd)
    if fmt != "zip":
        return CompressedTarShard(path, index_dir=index_dir, name=name, format=fmt, fd=fd)
    os.close(fd)
    from .zipshard import ZipShard  # only zip shards need it
    return ZipShard(path, index_dir=index_dir, name=name)
