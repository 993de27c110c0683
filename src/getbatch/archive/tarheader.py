"""TAR headers for output archives (ext/_ctarheader.pyx or its twin tarheader_py.py).

tar_header(name, size, mtime=0, mode=0o644, uid=0, gid=0) -> header bytes (ustar, with a
PAX header when the name or size needs one); tar_entry_size(name, size) -> bytes the whole
entry takes.
"""
from typing import TYPE_CHECKING

from ._accel import load

if TYPE_CHECKING:  # both implementations have the twin's API (_ctarheader.pyi says so)
    from .tarheader_py import tar_entry_size, tar_header
else:
    _impl = load("tarheader")
    tar_header = _impl.tar_header
    tar_entry_size = _impl.tar_entry_size

__all__ = ["tar_header", "tar_entry_size"]
