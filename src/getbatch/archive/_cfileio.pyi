"""The extension built from ext/_cfileio.pyx: the same API as its pure-Python twin fileio_py.py
(tests/archive cross-check the two), so its types are the twin's."""
from .fileio_py import open_sized as open_sized
