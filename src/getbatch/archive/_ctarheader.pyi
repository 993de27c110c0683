"""The extension built from ext/_ctarheader.pyx: the same API as its pure-Python twin tarheader_py.py
(tests/archive cross-check the two), so its types are the twin's."""
from .tarheader_py import tar_header as tar_header
from .tarheader_py import tar_entry_size as tar_entry_size
