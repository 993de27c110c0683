"""Chooses, once per hot path, between its Cython extension and its pure-Python twin.

Each hot path is a *role* with two implementations of one API: `getbatch.archive._c<role>`
(built from ext/_c<role>.pyx) and `getbatch.archive.<role>_py`. The role's own module
(emit.py, fileio.py, tarheader.py, tarscan.py, zipcd.py) calls `load(role)` and re-exports
the API; everything else imports that module, never `_c*` or `*_py` directly.
GETBATCH_PURE=1 (or true/yes/on, as the `pure` setting reads it) forces the twins even when
the extensions are built; a missing extension (no compiler at install time) selects the twin
silently, and `backend()` then says "python".
"""
import importlib
import os
from types import ModuleType

ROLES = ("emit", "fileio", "tarheader", "tarscan", "zipcd")
# the words of a true boolean, as the `pure` setting reads them (getbatch.config.TRUE_WORDS;
# tests/archive/test_accel.py keeps the two equal): the library does not import the
# server's configuration, so that it is usable on its own
TRUE_WORDS = ("1", "true", "yes", "on")
PURE = os.environ.get("GETBATCH_PURE", "").strip().lower() in TRUE_WORDS
_loaded: dict[str, str] = {}


def _module(role: str, kind: str) -> ModuleType:
    name = f"_c{role}" if kind == "cython" else f"{role}_py"
    return importlib.import_module(f"getbatch.archive.{name}")


def load(role: str) -> ModuleType:
    """The implementation of `role` in use: the extension unless it is missing or PURE."""
    if not PURE:
        try:
            mod = _module(role, "cython")
            _loaded[role] = "cython"
            return mod
        except ImportError:
            pass
    _loaded[role] = "python"
    return _module(role, "python")


def implementations(role: str) -> dict[str, ModuleType]:
    """{"python": twin, "cython": extension (when built)}, for cross-checking the two."""
    found = {"python": _module(role, "python")}
    try:
        found["cython"] = _module(role, "cython")
    except ImportError:
        pass
    return found


def backend() -> str:
    """'cython' when every loaded hot path is compiled, else 'python'."""
    if not _loaded:
        return "python" if PURE else "cython"
    return "cython" if all(v == "cython" for v in _loaded.values()) else "python"


def backends() -> dict[str, str]:
    """Which implementation each hot path resolved to."""
    return dict(_loaded)
