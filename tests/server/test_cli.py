"""`getbatch serve`: prints where it listens and the SDK snippet, honours env vars, stops on Ctrl-C."""
import os
import signal
import subprocess
import sys
import time

import requests

from .conftest import free_port


def test_serve_prints_snippet_env_config_and_stops_on_sigint(tmp_path):
    port = free_port()
    env = dict(os.environ, GETBATCH_PORT=str(port), GETBATCH_DATA_DIR=str(tmp_path / "d"),
               GETBATCH_WORKERS="1", GETBATCH_THREADS="2")
    proc = subprocess.Popen([sys.executable, "-m", "getbatch.cli", "serve"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path)
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
    assert "Traceback" not in text
