"""The README's snippets run as written (against a live node, with its port substituted)."""
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def blocks(lang):
    with open(os.path.join(ROOT, "README.md")) as f:
        return re.findall(rf"```{lang}\n(.*?)```", f.read(), re.S)


def run_python(code, cwd):
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_sdk_snippet(node, tmp_path):
    code = next(b for b in blocks("python") if "from aistore import Client" in b)
    r = run_python(code.replace("http://127.0.0.1:51080", node.url), tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "a.bin b'0123456789'", "shard.tar/x.wav b'RIFF....'",
        "shard.tar y.txt 5 b'hello'", "a.bin None 3 b'234'"]


def test_curl_snippet(node, tmp_path):
    if shutil.which("curl") is None or shutil.which("tar") is None:
        pytest.skip("needs curl and tar (Debian packages curl, tar)")
    test_sdk_snippet(node, tmp_path)  # the objects the curl line reads
    cmd = next(b for b in blocks("console") if "curl" in b).replace("http://127.0.0.1:51080", node.url)
    r = subprocess.run(cmd.replace("\\\n", " "), shell=True, cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "data/a.bin" in r.stdout and "data/shard.tar/y.txt" in r.stdout


def test_library_snippet(tmp_path):
    code = next(b for b in blocks("python") if "getbatch.archive" in b)
    r = run_python(code, tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "['a/b.jpg', 'x.wav']" and lines[1] == "b'x.wavx.wav'"
    assert lines[2] == "700" and lines[3] in ("cython", "python")
    assert (tmp_path / "out.tar").stat().st_size == 2048


def test_auth_snippets(tmp_path):
    """Key, node, tokens and the SDK call of the Authentication section, as written: the
    console lines run in bash (`getbatch` is this checkout's CLI; the node gets a free port
    and its own data dir from the environment), then the Python block with the node's URL."""
    from tests.remote_servers import free_port
    console = next(b for b in blocks("console") if "getbatch token issue" in b)
    code = next(b for b in blocks("python") if "AIS_AUTHN_TOKEN" in b)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    lines = [ln[2:] for ln in console.splitlines() if ln.startswith("$ ")]
    assert "getbatch token issue --user alice --bucket images:rw --ttl 8h" in console
    bin_dir = tmp_path / "bin"   # `getbatch`: exec'd, so that $! is the server itself
    bin_dir.mkdir()
    (bin_dir / "getbatch").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m getbatch.cli "$@"\n')
    (bin_dir / "getbatch").chmod(0o755)
    script = ["set -e", "trap 'kill $SERVE 2>/dev/null; wait' EXIT"]
    for line in lines:
        script.append(line)
        if line.startswith("getbatch serve"):   # wait for it, as a person would
            script += ["SERVE=$!", f"for i in $(seq 300); do curl -sf {url}/v1/health >/dev/null "
                       "&& break; sleep 0.1; done"]
    script.append(f"\"{sys.executable}\" - <<'PYEOF'\n{code.replace('http://127.0.0.1:51080', url)}PYEOF")
    env = dict(os.environ, GETBATCH_PORT=str(port), GETBATCH_DATA_DIR=str(tmp_path / "data"),
               GETBATCH_WORKERS="1", PATH=f"{bin_dir}:{os.environ['PATH']}")
    env.pop("AIS_AUTHN_TOKEN", None)
    r = subprocess.run(["bash", "-c", "\n".join(script)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == "b'meow'"
    assert oct((tmp_path / "auth.key").stat().st_mode & 0o777) == "0o600"
