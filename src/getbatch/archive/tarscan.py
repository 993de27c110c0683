"""TAR header walk (ext/_ctarscan.pyx or its twin tarscan_py.py).

scan(buf, base_offset=0, *, partial=False, shard=...) lists the members of TAR data in a
buffer (or a window of a stream); scan_fd(fd, size, *, shard=...) those of a plain .tar file,
reading only its headers. Both raise CorruptArchive naming the shard.
"""
from ._accel import load

_impl = load("tarscan")
scan = _impl.scan
scan_fd = _impl.scan_fd

__all__ = ["scan", "scan_fd"]
