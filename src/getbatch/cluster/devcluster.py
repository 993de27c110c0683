"""`getbatch cluster`: a local etcd and N nodes on consecutive ports, for development.

Every process is real (etcd, and one `getbatch serve` per node, each a gunicorn arbiter with its
workers); logs go to files under the data dir. Ctrl-C (or SIGTERM) stops them all.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import requests

ETCD_MISSING = """\
getbatch cluster needs the etcd server binary (`etcd`) on PATH, and none was found.
Install it with your system's package manager, e.g. on Debian or Ubuntu:
    sudo apt-get install etcd-server
or download a release from https://github.com/etcd-io/etcd/releases and put `etcd` on PATH."""

SNIPPET = """\
from aistore import Client
c = Client("{url}"); b = c.bucket("data"); b.create(exist_ok=True)
b.object("a.bin").get_writer().put_content(b"...")
for info, data in c.batch(["a.bin"], bucket=b).get(): print(info.obj_name, len(data))
# every node serves every object: Client("{other}") reads the same"""


class ClusterError(Exception):
    pass


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what, check, timeout, procs):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, p, log in procs:
            if p.poll() is not None:
                raise ClusterError(f"{name} exited (status {p.returncode}); see {log}")
        try:
            if check():
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise ClusterError(f"{what} not ready in {timeout:.0f}s")


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # SIGTERM stops the cluster as Ctrl-C does


def run(nodes, data_dir, port, workers, out=sys.stdout):
    etcd = shutil.which("etcd")
    if etcd is None:
        raise ClusterError(ETCD_MISSING)
    data_dir = os.path.abspath(data_dir)
    os.makedirs(data_dir, exist_ok=True)
    cport, pport = _free_port(), _free_port()
    etcd_url, peer_url = f"http://127.0.0.1:{cport}", f"http://127.0.0.1:{pport}"
    procs = []

    def spawn(name, argv, log):
        with open(log, "ab") as f:
            p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        procs.append((name, p, log))
        return p

    def stop_all():
        for _, p, _ in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _, p, _ in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        spawn("etcd", [etcd, "--name", "dev", "--data-dir", os.path.join(data_dir, "etcd"),
                       "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
                       "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                       "--initial-cluster", f"dev={peer_url}", "--log-level", "warn"],
              os.path.join(data_dir, "etcd.log"))
        _wait("etcd", lambda: requests.post(etcd_url + "/v3/kv/range", json={"key": "eA=="},
                                            timeout=1).ok, 20, procs)
        urls = []
        for i in range(nodes):
            ndir = os.path.join(data_dir, f"node{i}")
            os.makedirs(ndir, exist_ok=True)
            url = f"http://127.0.0.1:{port + i}"
            urls.append(url)
            spawn(f"node {i} ({url})",
                  [sys.executable, "-m", "getbatch.cli", "serve", "--port", str(port + i),
                   "--data-dir", os.path.join(ndir, "data"), "--etcd", etcd_url,
                   "--advertise", url, "--workers", str(workers)],
                  os.path.join(ndir, "server.log"))

        def all_joined():
            return all(len(requests.get(u + "/v1/daemon", params={"what": "smap"},
                                        timeout=1).json()["tmap"]) == nodes for u in urls)
        _wait(f"{nodes} nodes", all_joined, 60, procs)
        print(f"getbatch cluster: {nodes} nodes and etcd at {etcd_url}; data and logs under "
              f"{data_dir}\n" + "".join(f"  node {i}: {u}\n" for i, u in enumerate(urls)) +
              "Try it with the AIStore SDK (pip install aistore==2.0.0):\n\n" +
              SNIPPET.format(url=urls[0], other=urls[-1]) + "\n\nCtrl-C stops the cluster.",
              file=out, flush=True)
        while True:
            for name, p, log in procs:
                if p.poll() is not None:
                    raise ClusterError(f"{name} exited (status {p.returncode}); see {log}")
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("getbatch cluster: stopping", file=out, flush=True)
    finally:
        stop_all()
