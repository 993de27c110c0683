"""The extension built from ext/_czipcd.pyx: the same API as its pure-Python twin zipcd_py.py
(tests/archive cross-check the two), so its types are the twin's."""
from .zipcd_py import read_central_directory as read_central_directory
