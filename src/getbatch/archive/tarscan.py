"""TAR header walk (ext/_ctarscan.pyx or its twin tarscan_py.py).

scan(buf, base_offset=0, *, partial=False, shard=...) lists the members of TAR data in a
buffer (or a window of a stream); scan_fd(fd, size, *, shard=...) those of a plain .tar file,
reading only its headers; scan_pread(pread, size, *, shard=...) the same through a
`pread(length, offset)` function (a remote shard read with ranged GETs). All raise
CorruptArchive naming the shard.
"""
from typing import TYPE_CHECKING

from ._accel import load
# network round trips, not the parser, bound a walk through ranged reads: one implementation
from .tarscan_py import scan_pread

if TYPE_CHECKING:  # both implementations have the twin's API (_ctarscan.pyi says so)
    from .tarscan_py import scan, scan_fd
else:
    _impl = load("tarscan")
    scan = _impl.scan
    scan_fd = _impl.scan_fd

__all__ = ["scan", "scan_fd", "scan_pread"]
