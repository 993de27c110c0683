"""The wheelhouse installs getbatch into a fresh venv with no package index."""
import os
import subprocess
import sys
import venv

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_wheelhouse_installs_offline(tmp_path):
    house = tmp_path / "wheelhouse"
    subprocess.run(["bash", os.path.join(ROOT, "wheels", "build.sh"), str(house)], check=True,
                   capture_output=True, timeout=600)
    assert any(p.name.startswith("getbatch-") for p in house.iterdir())
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = str(env_dir / "bin" / "python")
    subprocess.run([py, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", str(house),
                    "getbatch"], check=True, timeout=300, cwd=tmp_path)
    out = subprocess.run([py, "-c", "import getbatch.archive as a, getbatch.server.app, io;"
                          "b = io.BytesIO(); w = a.open_writer('tar', b); w.add('x', b'1'); w.close();"
                          "print(a.backend(), len(b.getvalue()))"],
                         check=True, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    backend, size = out.stdout.split()
    assert backend == "cython" and int(size) == 2048
    assert os.path.exists(env_dir / "bin" / "getbatch")
