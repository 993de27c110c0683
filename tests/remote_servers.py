"""Real remote stores for tests: a moto S3 server process and a local HTTP origin process."""
import os
import shutil
import signal
import subprocess
import sys
import time

import requests

from getbatch.ports import free_port  # noqa: F401 (tests import it from here too)


class Process:
    """A server process on a free loopback port, ready once `ready_path` answers."""

    def __init__(self, argv, ready_path, log_path, env=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(log_path, "wb")
        self.log_path = log_path
        self.proc = subprocess.Popen([a.format(port=self.port) for a in argv], stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     env=dict(os.environ, **(env or {})))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited early: {open(log_path).read()}")
            try:
                requests.get(self.url + ready_path, timeout=1)
                return
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError(f"{argv[0]} not ready in 30 s")

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._log.close()


def start_moto(tmp_dir):
    """`moto_server -H 127.0.0.1 -p PORT` (the moto[server] test extra provides it)."""
    exe = shutil.which("moto_server")
    argv = [exe] if exe else [sys.executable, "-m", "moto.server"]
    return Process(argv + ["-H", "127.0.0.1", "-p", "{port}"], "/moto-api/",
                   os.path.join(tmp_dir, "moto.log"))


def start_http_origin(root, tmp_dir):
    """Python's http.server serving `root` (Last-Modified, sizes; no ETags, no ranges)."""
    return Process([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory",
                    str(root), "{port}"], "/", os.path.join(tmp_dir, "origin.log"))


S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
          "AWS_DEFAULT_REGION": "us-east-1"}


def s3_env(moto):
    """The standard AWS environment a node needs to reach `moto`, and nothing else."""
    return dict(S3_ENV, AWS_ENDPOINT_URL=moto.url)


def boto3_client(moto):
    import boto3
    return boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")
