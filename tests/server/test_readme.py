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
