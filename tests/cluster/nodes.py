"""Real clusters for tests: an etcd process and N gunicorn nodes on free loopback ports.

    with Cluster(tmp_path, n=3) as c:      # or the fixtures of tests/cluster/conftest.py
        c.urls                              # node URLs, c.nodes[i].id its stable id
        c.kill(1); c.wait_members(2)        # SIGKILL node 1; wait until the others drop it
        c.pause(0); c.resume(0)             # SIGSTOP / SIGCONT (whole process group)
        c.restart(1); c.wait_members(3)     # same port, same data dir, same id
        c.add()                             # one more node (join)
        c.etcd.stop(); c.etcd.start()       # etcd away and back (same data)
        c.secret()                          # the cluster secret, read from etcd
"""
import json
import os
import shutil
import signal
import subprocess
import time

import pytest
import requests

from getbatch.cluster.devcluster import tls_flags
from tests.support.nodes import Node, free_port, serve_argv, stop_nodes

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
LEASE_TTL = 4  # getbatch.cluster.membership.LEASE_TTL: how fast a dead node drops out


def require_etcd():
    if not os.path.exists(ETCD):
        pytest.fail("etcd is not installed (Debian package etcd-server): the cluster tests "
                    "need a real etcd")


class EtcdServer:
    """A single-member etcd on free loopback ports, its data in `base`; with `host` it
    listens on that address too and advertises it (bench/bench_cluster_netns.py)."""

    def __init__(self, base, host=None, tls=None):
        """`tls`: getbatch.cluster.devcluster.tls_flags() (etcd then serves HTTPS and wants a
        client certificate)."""
        require_etcd()
        self.base = str(base)
        os.makedirs(self.base, exist_ok=True)
        self.port, self.peer_port = free_port(), free_port()
        self.flags, self.http = (tls[0], tls[2]) if tls else ([], {})
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://{host or '127.0.0.1'}:{self.port}"
        self.listen = ",".join(dict.fromkeys([self.url, f"{scheme}://127.0.0.1:{self.port}"]))
        self.proc = None
        self.start()

    def start(self):
        peer = f"http://127.0.0.1:{self.peer_port}"
        log = open(os.path.join(self.base, "etcd.log"), "ab")
        self.proc = subprocess.Popen(
            [ETCD, "--name", "t", "--data-dir", os.path.join(self.base, "etcd-data"),
             "--listen-client-urls", self.listen, "--advertise-client-urls", self.url,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"t={peer}", "--log-level", "error", *self.flags],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("etcd exited early; see " + os.path.join(self.base, "etcd.log"))
            try:
                if requests.post(self.url + "/v3/kv/range", json={"key": "eA=="},
                                 timeout=1, **self.http).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError("etcd not ready in 20s")

    def stop(self, sig=signal.SIGTERM):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)
        self.proc = None

    def get(self, key):
        """The value at `key` (str) or None, read straight from etcd."""
        from getbatch.cluster.etcd import Etcd
        from getbatch.tls import ClientTLS
        tls = ClientTLS(self.http["verify"], *self.http["cert"]) if self.http else None
        kv = Etcd(self.url, tls=tls).get(key)
        return kv.value if kv else None


class Cluster:
    def __init__(self, base, n=3, workers=1, threads=4, env=None, token=None, tls=False):
        """`token`: a bearer token for reading the cluster map (nodes with `auth` on). `tls`:
        TLS everywhere, as `getbatch cluster --tls` (a throwaway CA under `base`; its file is
        `self.ca`, and `self.http` the requests options of a client holding a node's
        certificate)."""
        self.base = str(base)
        self.workers, self.threads, self.env = workers, threads, env
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        tls = tls_flags(self.base) if tls else None
        self.serve_flags, self.http, self.ca = (tls[1], tls[2], tls[3]) if tls else ([], {}, None)
        self.etcd = EtcdServer(self.base, tls=tls)
        self.nodes = []
        try:
            for _ in range(n):
                self.nodes.append(self._spawn(len(self.nodes), wait=False))
            for node in self.nodes:
                node._wait_ready()
                node.id = _node_id(node)
            self.wait_members(n)
        except BaseException:
            self.close()
            raise

    # ---- nodes
    def _spawn(self, i, port=None, wait=True):
        d = os.path.join(self.base, f"node{i}")
        os.makedirs(d, exist_ok=True)
        argv = serve_argv(self.workers, self.threads) + [
            "--etcd", self.etcd.url,
            "--advertise", f"{'https' if self.http else 'http'}://127.0.0.1:{{port}}",
            *self.serve_flags]
        node = Node(os.path.join(d, "data"), os.path.join(d, "server.log"), argv,
                    env=self.env, port=port, wait=wait, http=self.http)
        node.index = i
        if wait:
            node.id = _node_id(node)
        return node

    @property
    def urls(self):
        return [n.url for n in self.nodes]

    def live(self):
        return [n for n in self.nodes if n.proc.poll() is None and not getattr(n, "paused", False)]

    def add(self):
        """Start one more node (it joins); the new Node."""
        node = self._spawn(len(self.nodes))
        self.nodes.append(node)
        return node

    def kill(self, i):
        """SIGKILL node i (its whole process group), as a crash would."""
        node = self.nodes[i]
        os.killpg(node.proc.pid, signal.SIGKILL)
        node.proc.wait()
        node._log.close()

    def pause(self, i):
        os.killpg(self.nodes[i].proc.pid, signal.SIGSTOP)
        self.nodes[i].paused = True

    def resume(self, i):
        os.killpg(self.nodes[i].proc.pid, signal.SIGCONT)
        self.nodes[i].paused = False

    def stop(self, i):
        """Stop node i gracefully (SIGTERM: it leaves the cluster at once)."""
        self.nodes[i].stop()

    def restart(self, i):
        """Start node i again on its port and data dir (after kill or stop)."""
        old = self.nodes[i]
        if old.proc.poll() is None:
            old.stop()
        self.nodes[i] = self._spawn(i, port=old.port)
        return self.nodes[i]

    # ---- the cluster
    def smap(self, url):
        return requests.get(url + "/v1/daemon", params={"what": "smap"}, headers=self.headers,
                            timeout=5, **self.http).json()

    def wait_members(self, count, timeout=LEASE_TTL * 3 + 10):
        """Wait until every live node's map lists exactly `count` nodes; the ids."""
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            seen = {n.url: sorted(self.smap(n.url)["tmap"]) for n in self.live()}
            views = {tuple(v) for v in seen.values()}
            if len(views) == 1 and len(next(iter(views))) == count:
                return list(next(iter(views)))
            time.sleep(0.2)
        raise AssertionError(f"nodes did not agree on {count} members in {timeout}s: {seen}")

    def secret(self):
        return json.loads(self.etcd.get("getbatch/cluster"))["secret"]

    def close(self):
        for node in self.nodes:
            if getattr(node, "paused", False):
                self.resume(node.index)
        stop_nodes([n for n in self.nodes if n.proc.poll() is None])
        self.etcd.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _node_id(node):
    with open(os.path.join(node.data_dir, ".sys", "node-id")) as f:
        return f.read().strip()
