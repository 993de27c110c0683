"""`getbatch serve` and `getbatch config`: checks before gunicorn starts, the banner, Ctrl-C."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

from tests.support.nodes import free_port

CLI = [sys.executable, "-m", "getbatch.cli"]


def run(args, env=None, timeout=30, cwd=None):
    return subprocess.run(CLI + args, env=dict(os.environ, **(env or {})), capture_output=True,
                          text=True, timeout=timeout, cwd=cwd)


def test_serve_prints_banner_after_bind_env_config_and_stops_on_sigint(tmp_path):
    port = free_port()
    env = dict(os.environ, GETBATCH_PORT=str(port), GETBATCH_DATA_DIR=str(tmp_path / "d"),
               GETBATCH_WORKERS="1", GETBATCH_THREADS="2")
    proc = subprocess.Popen(CLI + ["serve"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        else:
            raise AssertionError("server did not come up")
        assert (tmp_path / "d" / "ais").is_dir()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = out.decode()
    assert proc.returncode == 0, text
    assert f"http://127.0.0.1:{port}" in text and "c.batch(" in text
    assert "1 workers x 2 threads" in text and "backend=" in text and "environment" in text
    assert text.index("Listening at") < text.index("getbatch 0.1.0 serving")
    assert "Traceback" not in text


@pytest.mark.parametrize("args,env,words", [
    (["--port", "99999"], {}, ["port", "99999", "65535"]),
    ([], {"GETBATCH_PORT": "abc"}, ["port", "'abc'", "GETBATCH_PORT"]),
    (["--workers", "0"], {}, ["workers", "at least 1"]),
    (["--threads", "0"], {}, ["threads", "at least 1"]),
    (["--max-body", "much"], {}, ["max_body"]),
])
def test_bad_values_are_one_line_before_gunicorn(tmp_path, args, env, words):
    r = run(["serve", "--data-dir", str(tmp_path / "d")] + args, env)
    assert r.returncode == 2
    assert r.stdout == "" and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("getbatch: ") and all(w in r.stderr for w in words), r.stderr
    assert not (tmp_path / "d").exists()


def test_unusable_data_dirs(tmp_path):
    afile = tmp_path / "file"
    afile.write_text("x")
    cases = [(afile, "not a directory")]
    frozen = tmp_path / "frozen"
    frozen.mkdir()
    if shutil.which("chattr") and subprocess.run(["chattr", "+i", str(frozen)]).returncode == 0:
        cases.append((frozen, "not usable"))
    try:
        for d, words in cases:
            r = run(["serve", "--data-dir", str(d), "--port", str(free_port())])
            assert r.returncode == 1, r.stderr
            assert len(r.stderr.strip().splitlines()) == 1 and words in r.stderr, r.stderr
            assert str(d) in r.stderr and "Traceback" not in r.stderr
    finally:
        subprocess.run(["chattr", "-i", str(frozen)], check=False)
    assert len(cases) == 2 or os.geteuid() != 0


def test_port_in_use_is_one_line_and_no_banner(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run(["serve", "--data-dir", str(tmp_path / "d"), "--port", str(port)])
    assert r.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "in use" in r.stderr
    assert "serving" not in r.stdout and len(r.stderr.strip().splitlines()) == 1


def test_version_and_help():
    r = run(["--version"])
    assert r.returncode == 0 and r.stdout.startswith("getbatch 0.1.0 (backend ")
    r = run(["serve", "--help"])
    for flag in ("--port", "--data-dir", "--max-soft-errs", "--config", "GETBATCH_PORT"):
        assert flag in r.stdout
    assert "TCP port to listen on" in r.stdout


def test_config_show_prints_values_and_origins(tmp_path):
    f = tmp_path / "n.toml"
    f.write_text('threads = 3\nmax_body = "1MiB"\n')
    r = run(["config", "show", "--config", str(f), "--port", "7000"],
            env={"GETBATCH_MAX_SOFT_ERRS": "2"})
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line.split(None, 2)[1:] for line in r.stdout.splitlines()}
    assert rows["port"] == ["7000", "flag --port"]
    assert rows["threads"] == ["3", f"file {f}"]
    assert rows["max_body"] == ["1MiB", f"file {f}"]
    assert rows["max_soft_errs"] == ["2", "env GETBATCH_MAX_SOFT_ERRS"]
    assert rows["host"] == ["127.0.0.1", "default"]
