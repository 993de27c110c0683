"""`open_shard`: opens a shard with the reader its magic bytes call for."""
import os

from .formats import detect_format
from .tarshard import CompressedTarShard, TarShard


def open_shard(path, *, index_dir=None, name=None):
    """A Shard for the .tar, .tgz/.tar.gz, .tar.lz4 or .zip file at `path`.

    `name` names the shard in errors and breaks format ties by its extension (default: path);
    `index_dir`, if given, is where shard indexes are persisted between processes.
    Raises NotAnArchive when the bytes match no supported format.
    """
    path = os.fspath(path)
    fmt = detect_format(path, name)
    if fmt == "tar":
        return TarShard(path, index_dir=index_dir, name=name)
    if fmt == "zip":
        from .zipshard import ZipShard  # written separately; only zip shards need it
        return ZipShard(path, index_dir=index_dir)
    return CompressedTarShard(path, index_dir=index_dir, name=name, format=fmt)
