"""Chooses, at import, between a Cython extension and its pure-Python twin.

GETBATCH_PURE=1 forces the twins even when the extensions are built; a missing
extension (no compiler at install time) selects the twin silently.
"""
import importlib
import os

PURE = os.environ.get("GETBATCH_PURE") == "1"
_loaded: dict[str, str] = {}


def load(cython_name: str, python_name: str):
    """Return the module `getbatch.archive.<cython_name>` or, failing that, `<python_name>`."""
    if not PURE:
        try:
            mod = importlib.import_module(f"getbatch.archive.{cython_name}")
            _loaded[cython_name] = "cython"
            return mod
        except ImportError:
            pass
    _loaded[cython_name] = "python"
    return importlib.import_module(f"getbatch.archive.{python_name}")


def load_pure(python_name: str):
    """The pure-Python twin, for cross-checks against the extension."""
    return importlib.import_module(f"getbatch.archive.{python_name}")


def backend() -> str:
    """'cython' when every loaded hot path is compiled, else 'python'."""
    if not _loaded:
        return "python" if PURE else "cython"
    return "cython" if all(v == "cython" for v in _loaded.values()) else "python"


def backends() -> dict[str, str]:
    """Which implementation each accelerated module resolved to."""
    return dict(_loaded)
