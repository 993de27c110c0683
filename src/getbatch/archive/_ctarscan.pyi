"""The extension built from ext/_ctarscan.pyx: the same API as its pure-Python twin tarscan_py.py
(tests/archive cross-check the two), so its types are the twin's."""
from .tarscan_py import scan as scan
from .tarscan_py import scan_fd as scan_fd
