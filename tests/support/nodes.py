"""Test helpers for real nodes: `Node` (a server process on a free loopback port, stopped
with its whole process group), the command lines that start one, and an SDK client that fails
fast. Tests, the cluster harness and bench/ scripts import them from here."""
import os
import signal
import subprocess
import sys
import time

import pytest
import requests
from tenacity import Retrying, stop_after_attempt
from urllib3.util.retry import Retry

from aistore import Client
from aistore.sdk.retry_config import RetryConfig

from getbatch.ports import free_port

__all__ = ["BOTH_PROVIDERS", "Node", "bucket_path", "free_port", "make_client",
           "plain_gthread_argv", "serve_argv", "stop_nodes"]


class Node:
    """One running server process."""

    def __init__(self, data_dir, log_path, argv, env=None, port=None, wait=True, http=None):
        """`http`: requests options reaching an HTTPS node ({"verify": CA, "cert": ...})."""
        self.port = port or free_port()
        self.http = http or {}
        self.url = f"{'https' if http else 'http'}://127.0.0.1:{self.port}"
        self.data_dir = str(data_dir)
        self.log_path = str(log_path)
        self._log = open(self.log_path, "ab")
        full_env = dict(os.environ, GETBATCH_DATA_DIR=self.data_dir, **(env or {}))
        self.proc = subprocess.Popen([a.format(port=self.port, data=self.data_dir) for a in argv],
                                     stdout=self._log, stderr=subprocess.STDOUT, env=full_env,
                                     start_new_session=True)
        if wait:
            self._wait_ready()

    def _wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                if requests.get(self.url + "/v1/health", timeout=1,
                                **self.http).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError(f"server not ready in {timeout}s:\n{self.log()}")

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        stop_nodes([self])


def stop_nodes(nodes):
    """Stop nodes' whole process groups (gunicorn's workers, and for a traced node the server
    under strace, which would outlive strace if only strace were signalled): SIGTERM, then
    SIGKILL for any still there after 15 s. The nodes stop together, not one after another."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        alive = [n for n in nodes if _group_alive(n.proc.pid)]
        for n in alive:
            try:
                os.killpg(n.proc.pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while alive and time.monotonic() < deadline:
            for n in alive:
                n.proc.poll()
            alive = [n for n in alive if _group_alive(n.proc.pid)]
            if alive:
                time.sleep(0.05)
        if not alive:
            break
    for n in nodes:
        n.proc.wait()
        n._log.close()


def _group_alive(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def serve_argv(workers=2, threads=4):
    return [sys.executable, "-m", "getbatch.cli", "serve", "--port", "{port}", "--data-dir", "{data}",
            "--workers", str(workers), "--threads", str(threads)]


def plain_gthread_argv():
    """The same app under gunicorn's stock gthread worker (no zero-copy path)."""
    return [sys.executable, "-m", "gunicorn", "-k", "gthread", "--threads", "4", "-w", "1",
            "--no-control-socket", "-b", "127.0.0.1:{port}", "getbatch.server.wsgi:app"]


def make_client(url, timeout=(5, 60), token=None, ca_cert=None):
    """An SDK client that fails fast: no status retries, one network attempt. `token`: its
    bearer token (None: the SDK's default, env AIS_AUTHN_TOKEN); `ca_cert`: the CA of an
    HTTPS node."""
    retry = RetryConfig(http_retry=Retry(total=0, connect=0, read=0, status_forcelist=[]),
                        network_retry=Retrying(stop=stop_after_attempt(1), reraise=True))
    return Client(url, retry_config=retry, timeout=timeout, token=token, ca_cert=ca_cert)


BOTH_PROVIDERS = pytest.mark.parametrize("bucket", ["ais", "aws"], indirect=True)


def bucket_path(bucket):
    """The URL path suffix and query naming `bucket` for /v1/ml/moss."""
    return f"/{bucket.name}?provider={bucket.provider.value}"
