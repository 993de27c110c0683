"""`getbatch cluster`: a local etcd and N nodes on consecutive ports, for development.

Every process is real (etcd, and one `getbatch serve` per node, each a gunicorn arbiter with its
workers); logs go to files under the data dir. A cluster you can break on purpose: when a node
(or etcd) exits, the others keep running, and the message names the process, how it ended and
the command that starts it again; SIGHUP to this process (or `--restart-exited`) restarts what
exited. Ctrl-C (or SIGTERM) stops them all. With `--tls` a throwaway CA (devcerts.py) signs a
certificate for etcd and one for the nodes: etcd and the nodes serve HTTPS, and every
connection between them is mutual TLS, as in production (docs/deploy.md).
"""
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

import requests

from ..ports import free_port
from .devcerts import CertError, DevCA

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
TLS_NOTE = """# TLS: the nodes' certificates are signed by the throwaway CA {ca}; give it to
# clients (Client(url, ca_cert=...); with REQUESTS_CA_BUNDLE set, that wins: point it there)"""

READY_TIMEOUT = 60
# a process that exits this soon after an automatic restart is not restarted again by itself
# (it would only crash in a loop); SIGHUP still restarts it
FLAP_SECONDS = 10


class ClusterError(Exception):
    pass


class Member:
    """One process of the dev cluster (etcd or a node): how to start it, and the running one."""

    def __init__(self, name, argv, log, ready_url=None, data_dir=None, http=None):
        self.name, self.argv, self.log = name, argv, log
        self.http = http or {}       # requests options reaching it (the CA, a client certificate)
        self.ready_url = ready_url   # answers 200 once the process serves
        self.data_dir = data_dir     # a node's data dir (its id is kept there)
        self.proc = None
        self.started = 0.0
        self.restarts = 0
        self.flapping = False        # exited soon after a restart: not restarted by itself
        self.reported = False

    def start(self):
        with open(self.log, "ab") as f:
            # its own session: Ctrl-C in the terminal reaches this process alone, which stops
            # the others in order; and a node is its whole process group (arbiter and workers)
            self.proc = subprocess.Popen(self.argv, stdout=f, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.started = time.monotonic()
        self.reported = False

    @property
    def pid(self):
        return self.proc.pid

    def exited(self):
        return self.proc is not None and self.proc.poll() is not None

    def reap_group(self):
        """Kill what is left of the process group once its leader exited (a node's workers
        outlive a SIGKILLed arbiter for a moment and would hold its port)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def node_id(self):
        try:
            with open(os.path.join(self.data_dir, ".sys", "node-id")) as f:
                return f.read().strip()
        except (OSError, TypeError):
            return "?"

    def how_it_ended(self):
        rc = self.proc.returncode
        if rc < 0:
            try:
                return f"killed by {signal.Signals(-rc).name}"
            except ValueError:
                return f"killed by signal {-rc}"
        return f"exit code {rc}"

    def command(self):
        """The shell command that starts it again by hand, logging where it logged."""
        return f"{shlex.join(self.argv)} >> {shlex.quote(self.log)} 2>&1"

    def ready(self):
        try:
            return requests.get(self.ready_url, timeout=1, **self.http).status_code == 200
        except requests.RequestException:
            return False

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)


def _wait(what, check, timeout, members):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in members:
            if m.exited():
                raise ClusterError(f"{m.name} exited ({m.how_it_ended()}); see {m.log}")
        try:
            if check():
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise ClusterError(f"{what} not ready in {timeout:.0f}s")


class _Hangup:
    """SIGHUP asks for the exited processes to be started again."""

    def __init__(self):
        self.asked = False

    def __call__(self, signum, frame):
        self.asked = True


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def tls_flags(data_dir):
    """A throwaway CA under `data_dir`/tls and its certificates: (etcd's extra flags, a node's
    extra flags, requests options of a client holding the node certificate, the CA file)."""
    try:
        ca = DevCA(os.path.join(data_dir, "tls"))
        server, node = ca.issue("etcd"), ca.issue("node")
    except CertError as exc:
        raise ClusterError(f"--tls: {exc}") from None
    etcd = ["--cert-file", server.cert, "--key-file", server.key, "--client-cert-auth",
            "--trusted-ca-file", ca.cert]
    serve = ["--tls-cert", node.cert, "--tls-key", node.key, "--tls-ca", ca.cert,
             "--etcd-ca", ca.cert, "--etcd-cert", node.cert, "--etcd-key", node.key]
    return etcd, serve, {"verify": ca.cert, "cert": (node.cert, node.key)}, ca.cert


def run(nodes, data_dir, port, workers, restart_exited=False, out=sys.stdout, use_tls=False):
    etcd = shutil.which("etcd")
    if etcd is None:
        raise ClusterError(ETCD_MISSING)
    data_dir = os.path.abspath(data_dir)
    os.makedirs(data_dir, exist_ok=True)
    etcd_tls, serve_tls, http, ca = tls_flags(data_dir) if use_tls else ([], [], {}, None)
    scheme = "https" if use_tls else "http"
    cport, pport = free_port(), free_port()
    etcd_url, peer_url = f"{scheme}://127.0.0.1:{cport}", f"http://127.0.0.1:{pport}"
    members = [Member("etcd", [etcd, "--name", "dev", "--data-dir",
                               os.path.join(data_dir, "etcd"),
                               "--listen-client-urls", etcd_url,
                               "--advertise-client-urls", etcd_url,
                               "--listen-peer-urls", peer_url,
                               "--initial-advertise-peer-urls", peer_url,
                               "--initial-cluster", f"dev={peer_url}", "--log-level", "warn",
                               *etcd_tls],
                      os.path.join(data_dir, "etcd.log"), ready_url=etcd_url + "/health",
                      http=http)]
    urls = []
    for i in range(nodes):
        ndir = os.path.join(data_dir, f"node{i}")
        os.makedirs(ndir, exist_ok=True)
        url = f"{scheme}://127.0.0.1:{port + i}"
        urls.append(url)
        members.append(Member(
            f"node {i}", [sys.executable, "-m", "getbatch.cli", "serve", "--port", str(port + i),
                          "--data-dir", os.path.join(ndir, "data"), "--etcd", etcd_url,
                          "--advertise", url, "--workers", str(workers), *serve_tls],
            os.path.join(ndir, "server.log"), ready_url=url + "/v1/health",
            data_dir=os.path.join(ndir, "data"), http=http))

    hangup = _Hangup()
    # SIGINT too: a shell starts a background job with SIGINT ignored
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    signal.signal(signal.SIGHUP, hangup)
    try:
        members[0].start()
        _wait("etcd", members[0].ready, 20, members[:1])
        for m in members[1:]:
            m.start()

        def all_joined():
            return all(len(requests.get(u + "/v1/daemon", params={"what": "smap"}, timeout=1,
                                        **http).json()["tmap"]) == nodes for u in urls)
        _wait(f"{nodes} nodes", all_joined, READY_TIMEOUT, members)
        print(f"getbatch cluster (pid {os.getpid()}): {nodes} nodes and etcd at {etcd_url} "
              f"(pid {members[0].pid}); data and logs under {data_dir}\n" +
              "".join(f"  node {i}: {u} (id {m.node_id()}, pid {m.pid})\n"
                      for i, (u, m) in enumerate(zip(urls, members[1:]))) +
              "Try it with the AIStore SDK (pip install aistore==2.0.0):\n\n" +
              SNIPPET.format(url=urls[0], other=urls[-1]) + "\n" +
              (TLS_NOTE.format(ca=ca) + "\n" if ca else "") + "\n" +
              "Kill a node to watch the others carry on; `kill -HUP "
              f"{os.getpid()}` starts what exited again. Ctrl-C stops the cluster.",
              file=out, flush=True)
        _supervise(members, hangup, restart_exited, out)
    except KeyboardInterrupt:
        print("getbatch cluster: stopping", file=out, flush=True)
    finally:
        _stop_all(members)


def _supervise(members, hangup, restart_exited, out):
    """Report each process that exits; start exited ones again on SIGHUP (or at once with
    `restart_exited`, unless one keeps failing). Returns only through KeyboardInterrupt."""
    while True:
        for m in members:
            if m.exited() and not m.reported:
                m.reported = True
                m.flapping = m.restarts > 0 and time.monotonic() - m.started < FLAP_SECONDS
                m.reap_group()
                _report_exit(m, members, restart_exited, out)
        exited = [m for m in members if m.exited()]
        if hangup.asked:
            hangup.asked = False
            again = exited
        elif restart_exited:
            again = [m for m in exited if not m.flapping]
        else:
            again = []
        for m in again:  # etcd first: a node needs it to join
            _restart(m, out)
        time.sleep(0.2)


def _report_exit(m, members, restart_exited, out):
    ident = f"id {m.node_id()}, " if m.data_dir else ""
    others = [o.name for o in members if o is not m and not o.exited()]
    if restart_exited and not m.flapping:
        how = "Restarting it (--restart-exited)."
    else:
        how = (f"To start it again: kill -HUP {os.getpid()} (this cluster restarts what "
               f"exited), or by hand (then Ctrl-C here does not stop it):\n"
               f"    {m.command()}")
        if restart_exited:
            how = (f"It exited within {FLAP_SECONDS}s of its restart, so it is not restarted "
                   f"by itself again; see {m.log}. " + how)
    print(f"getbatch cluster: {m.name} ({ident}pid {m.pid}) exited: {m.how_it_ended()}; "
          f"still running: {', '.join(others) or 'nothing'}. {how}", file=out, flush=True)


def _restart(m, out):
    m.restarts += 1
    m.start()
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline and not m.exited():
        if m.ready():
            print(f"getbatch cluster: {m.name} restarted (pid {m.pid})", file=out, flush=True)
            return
        time.sleep(0.2)
    if not m.exited():
        print(f"getbatch cluster: {m.name} restarted (pid {m.pid}) but not ready in "
              f"{READY_TIMEOUT}s; see {m.log}", file=out, flush=True)


def _stop_all(members):
    for m in reversed(members):
        m.stop()
    deadline = time.monotonic() + 15
    for m in members:
        if m.proc is None:
            continue
        try:
            m.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            m.proc.kill()
            m.proc.wait()
        m.reap_group()
