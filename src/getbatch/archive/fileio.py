"""`open_sized(path, flags) -> (fd, size)`: open a regular file and learn its size in one
call (ext/_cfileio.pyx or its twin fileio_py.py)."""
from ._accel import load

open_sized = load("fileio").open_sized

__all__ = ["open_sized"]
