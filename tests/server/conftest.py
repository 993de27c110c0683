"""Fixtures that start real gunicorn nodes on free loopback ports and build SDK clients."""
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

from getbatch.ports import free_port  # noqa: F401 (tests import it from here)

from ..remote_servers import boto3_client, s3_env


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
        """Stop the whole process group: gunicorn's workers, and for a traced node the
        server under strace (which would outlive strace if only strace were signalled)."""
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _group_alive(self.proc.pid):
                self.proc.poll()
                time.sleep(0.05)
            if not _group_alive(self.proc.pid):
                break
        self.proc.wait()
        self._log.close()


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


@pytest.fixture(scope="session")
def node(tmp_path_factory, moto):
    """The shared node; its aws:// buckets live on a moto S3 server, reached through the
    standard AWS environment alone."""
    d = tmp_path_factory.mktemp("node")
    n = Node(d / "data", d / "server.log", serve_argv(), env=s3_env(moto))
    yield n
    n.stop()


@pytest.fixture(scope="session")
def plain_node(node, tmp_path_factory):
    """A second server over the SAME data dir, with the stock gthread worker."""
    d = tmp_path_factory.mktemp("plain")
    n = Node(node.data_dir, d / "server.log", plain_gthread_argv())
    yield n
    n.stop()


@pytest.fixture
def client(node):
    return make_client(node.url)


_counter = [0]


@pytest.fixture
def bucket(request, client, moto):
    """A new empty bucket: ais:// by default; on S3 (moto) for tests parametrized with
    `pytest.mark.parametrize("bucket", ["ais", "aws"], indirect=True)`."""
    _counter[0] += 1
    name = f"b{os.getpid()}-{_counter[0]}"
    provider = getattr(request, "param", "ais")
    if provider == "ais":
        b = client.bucket(name)
        b.create(exist_ok=True)
        yield b
        b.delete(missing_ok=True)
        return
    s3 = boto3_client(moto)
    s3.create_bucket(Bucket=name)
    yield client.bucket(name, provider="aws")  # a remote bucket: no create step
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for o in page.get("Contents", []):
            s3.delete_object(Bucket=name, Key=o["Key"])
    s3.delete_bucket(Bucket=name)


BOTH_PROVIDERS = pytest.mark.parametrize("bucket", ["ais", "aws"], indirect=True)


def bucket_path(bucket):
    """The URL path suffix and query naming `bucket` for /v1/ml/moss."""
    return f"/{bucket.name}?provider={bucket.provider.value}"
