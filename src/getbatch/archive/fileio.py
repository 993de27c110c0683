"""`open_sized(path, flags) -> (fd, size)`: open a regular file and learn its size in one
call (ext/_cfileio.pyx or its twin fileio_py.py)."""
from typing import TYPE_CHECKING

from ._accel import load

if TYPE_CHECKING:  # both implementations have the twin's API (_cfileio.pyi says so)
    from .fileio_py import open_sized
else:
    open_sized = load("fileio").open_sized

__all__ = ["open_sized"]
