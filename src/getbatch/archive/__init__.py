"""getbatch.archive: read shards (.tar, .tgz/.tar.gz, .tar.lz4, .zip) and write output archives.

This layer knows nothing of HTTP or buckets. Hot paths (TAR header scan and packing,
ZIP central-directory parsing, the emit loop) are Cython extensions built from ext/,
each with a pure-Python twin of the same API chosen at import (GETBATCH_PURE=1 forces
the twins); `backend()` tells which is active.

Reading::

    with open_shard("shard-000.tar") as sh:
        sh.read("a/b.jpg")                    # one member
        sh.read_many(["x.wav", "a/b.jpg"])    # many, in this order, one pass
        for chunk in sh.iter_member("big.bin"):  # any size, in bounded memory
            ...

    # per request: a decompression limit; per process: decompressed copies of .tgz/.tar.lz4
    open_shard(path, budget=InflateBudget(4 << 30), cache=InflateCache(cache_dir, 8 << 30))

    open_shard(fd, name="bucket/shard-000.tar", version="7")   # an open fd, taken over

    # parsed indexes are kept in a ShardMemory: the library's unless one is passed
    mine = ShardMemory(max_bytes=16 << 20)
    open_shard(path, memory=mine)

Every cached index belongs to one version of one shard: it is keyed by the identity of the
fd being read (device, inode, size, mtime, ctime) plus the caller's `version` string.

Writing::

    with open_writer("tar", sink) as w:       # sink: anything with .write(bytes)
        w.add("name", b"data")
"""
from ._accel import backend, backends
from .errors import (ArchiveError, CorruptArchive, EmitError, InflateLimit, MemberNotFound,
                     NotAnArchive, UnsafeName)
from .member import DIR, FILE, HARDLINK, OTHER, SYMLINK, Member, Shard
from .formats import FORMATS, detect_format
from .shards import index_state, open_shard
from .inflate import MAX_INFLATE, InflateBudget
from .inflatecache import InflateCache
from .memory import ShardMemory
from .tarblock import tar_pad
from .tarheader import tar_entry_size, tar_header
from .writers import OUTPUT_FORMATS, open_writer
from .emit import emit
from .extract import extract_to

__all__ = [
    "ArchiveError", "CorruptArchive", "EmitError", "InflateLimit", "MemberNotFound", "NotAnArchive",
    "UnsafeName", "InflateBudget", "InflateCache", "MAX_INFLATE", "ShardMemory",
    "Member", "Shard", "FILE", "DIR", "SYMLINK", "HARDLINK", "OTHER",
    "FORMATS", "detect_format", "open_shard", "index_state",
    "OUTPUT_FORMATS", "open_writer", "tar_header", "tar_entry_size", "tar_pad",
    "emit", "extract_to", "backend", "backends",
]
