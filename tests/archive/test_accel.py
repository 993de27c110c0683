"""The archive library stands on its own: it reads GETBATCH_PURE as the `pure` setting does,
without importing the server's configuration."""
import subprocess
import sys

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
