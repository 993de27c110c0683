"""The archive library stands on its own: it reads GETBATCH_PURE as the `pure` setting does,
without importing the server's configuration. The stubs of its extensions (_c<role>.pyi), which
give each extension its twin's types, describe what the extension takes."""
import ast
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from getbatch import config
from getbatch.archive import _accel


def test_pure_reads_booleans_as_the_setting_does():
    assert _accel.TRUE_WORDS == config.TRUE_WORDS


def test_library_imports_no_server_module():
    probe = ("import sys, getbatch.archive; "
             "print(sorted(m for m in sys.modules if m.startswith('getbatch.') "
             "and not m.startswith('getbatch.archive')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def _parameters(fn):
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize("role", _accel.ROLES)
def test_each_stub_describes_its_extension(role):
    found = _accel.implementations(role)
    if "cython" not in found:
        pytest.skip(f"_c{role} is not built")
    stub = Path(_accel.__file__).with_name(f"_c{role}.pyi")
    names = [a.name for node in ast.parse(stub.read_text()).body
             if isinstance(node, ast.ImportFrom) for a in node.names]
    assert names
    for name in names:
        ext, twin = getattr(found["cython"], name), getattr(found["python"], name)
        assert _parameters(ext) == _parameters(twin), name
