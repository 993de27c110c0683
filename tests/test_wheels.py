"""Packaging: the wheelhouse installs getbatch into a fresh venv with no package index, and a
failed Cython build is announced and falls back to the pure-Python twins.

Two shortcuts keep them within the suite's time, neither in what they check: the venv is made
without pip (this pip installs into it, `pip --python`; ensurepip took 30 s on a loaded
machine), and the failing build runs without build isolation (the build requirements are the
test extra's, so no index and no build environment; 70 s became 25)."""
import os
import subprocess
import sys
import venv
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _need_index(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--dest", str(tmp_path / "probe"), "msgpack"],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        pytest.skip("building the wheelhouse needs a package index (network): "
                    f"pip download msgpack failed: {r.stderr.strip()[-200:]}")


@pytest.mark.slow
def test_wheelhouse_installs_offline(tmp_path):
    _need_index(tmp_path)
    house = tmp_path / "wheelhouse"
    subprocess.run(["bash", os.path.join(ROOT, "wheels", "build.sh"), str(house)], check=True,
                   capture_output=True, timeout=600)
    assert any(p.name.startswith("getbatch-") for p in house.iterdir())
    env_dir = tmp_path / "venv"
    venv.create(env_dir)
    py = str(env_dir / "bin" / "python")
    # A PYTHONPATH pointing at a checkout would make pip see getbatch as installed already.
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-m", "pip", "--python", py, "install", "--quiet", "--no-index",
                    "--find-links", str(house), "getbatch"], check=True, timeout=300, cwd=tmp_path,
                   env=clean)
    out = subprocess.run([py, "-c", "import getbatch.archive as a, getbatch.server.app, io;"
                          "b = io.BytesIO(); w = a.open_writer('tar', b); w.add('x', b'1'); w.close();"
                          "print(a.backend(), len(b.getvalue()))"],
                         check=True, capture_output=True, text=True, cwd=tmp_path, timeout=60,
                         env=clean)
    backend, size = out.stdout.split()
    assert backend == "cython" and int(size) == 2048
    assert os.path.exists(env_dir / "bin" / "getbatch")


@pytest.mark.slow
def test_failed_cython_build_is_announced_and_falls_back(tmp_path):
    src = tmp_path / "src"
    subprocess.run(["git", "clone", "--quiet", ROOT, str(src)], check=True, timeout=60)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation",
                        "--wheel-dir", str(tmp_path / "w"), str(src)],
                       env=dict(os.environ, CC="/bin/false"), capture_output=True, text=True,
                       timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "getbatch: the C extensions were not built" in r.stdout + r.stderr
    wheel = next((tmp_path / "w").glob("getbatch-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        z.extractall(tmp_path / "site")
        assert not any(n.endswith(".so") for n in z.namelist())
        # typed: the marker and every extension's stub ship, also when no extension does
        assert "getbatch/py.typed" in z.namelist()
        stubs = {n for n in z.namelist() if n.startswith("getbatch/archive/_c")}
        assert stubs == {f"getbatch/archive/_c{r}.pyi" for r in ("emit", "fileio", "tarheader",
                                                                   "tarscan", "zipcd")}
    env = {k: v for k, v in os.environ.items() if k != "GETBATCH_PURE"}
    out = subprocess.run([sys.executable, "-m", "getbatch.cli", "--version"], capture_output=True,
                         text=True, env=dict(env, PYTHONPATH=str(tmp_path / "site")),
                         cwd=tmp_path, timeout=60)
    assert out.stdout.strip() == "getbatch 0.1.0 (backend python)", out.stderr
