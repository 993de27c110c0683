"""The extension built from ext/_cemit.pyx: the same API as its pure-Python twin emit_py.py
(tests/archive cross-check the two), so its types are the twin's."""
from .emit_py import emit as emit
