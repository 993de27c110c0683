"""`getbatch cluster` as a user breaks it: a real process with etcd and nodes; one node is
SIGKILLed, the others keep serving, the message names it and how to restart it, SIGHUP restarts
it, SIGINT stops everything and leaves no process behind."""
import os
import re
import signal
import subprocess
import sys
import threading
import time

import requests

from getbatch.ports import ephemeral_range, free_ports

from tests.support.nodes import make_client

from .nodes import require_etcd


class Output:
    """The lines a process prints, read by a thread so a test can wait for one."""

    def __init__(self, stream):
        self.lines = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream):
        for line in stream:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()

    def wait_for(self, pattern, start=0, timeout=90):
        """The first match of `pattern` in a line from index `start` on, and the next index."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i in range(start, len(self.lines)):
                    m = re.search(pattern, self.lines[i])
                    if m:
                        return m, i + 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no line matching {pattern!r} in {timeout}s:\n"
                                         + "".join(self.lines))
                self._cond.wait(left)


def _processes_under(path):
    """pids of the processes whose command line names `path` (our etcd, nodes, workers)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if path.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def _members(url):
    return sorted(requests.get(url + "/v1/daemon", params={"what": "smap"}, timeout=5)
                  .json()["tmap"])


def _until(cond, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"not true within {timeout}s")


def _start(tmp_path, nodes, *flags):
    """A `getbatch cluster` process, its Output, its data dir and {index: (url, id, pid)} of
    its nodes, once it says it is ready."""
    require_etcd()
    port = free_ports(nodes)
    assert port + nodes - 1 < ephemeral_range()[0]
    data = str(tmp_path / "dev")
    p = subprocess.Popen([sys.executable, "-m", "getbatch.cli", "cluster", "--nodes", str(nodes),
                          "--port", str(port), "--data-dir", data, *flags],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = Output(p.stdout)
    try:
        out.wait_for("Ctrl-C stops the cluster")
    except BaseException:
        _stop(p, out, data)
        raise
    nodes = {int(i): (u, nid, int(pid)) for i, u, nid, pid in re.findall(
        r"node (\d): (http://\S+) \(id (\S+), pid (\d+)\)", "".join(out.lines))}
    assert nodes[0][0] == f"http://127.0.0.1:{port}"
    return p, out, data, nodes


def _stop(p, out, data):
    """Ctrl-C: every process of the cluster ends."""
    p.send_signal(signal.SIGINT)
    p.wait(timeout=60)
    out.wait_for("getbatch cluster: stopping", timeout=5)
    _until(lambda: not _processes_under(data), timeout=10)


def test_a_killed_node_is_named_and_restarted_and_ctrl_c_stops_all(tmp_path):
    p, out, data, nodes = _start(tmp_path, 3)
    try:
        at = len(out.lines)
        assert "from aistore import Client" in "".join(out.lines)
        assert sorted(nodes) == [0, 1, 2]
        urls = [nodes[i][0] for i in range(3)]
        port = int(urls[0].rsplit(":", 1)[1])
        assert urls[2] == f"http://127.0.0.1:{port + 2}"
        make_client(urls[0]).bucket("b").create()

        url1, id1, pid1 = nodes[1]
        os.killpg(pid1, signal.SIGKILL)
        m, at = out.wait_for(r"node 1 \((.*)\) exited: (.*?); still running: (.*?)\. ", at)
        assert m.group(1) == f"id {id1}, pid {pid1}"
        assert m.group(2) == "killed by SIGKILL"
        assert m.group(3) == "etcd, node 0, node 2"
        m, at = out.wait_for(r"^\s+(.*getbatch\.cli serve.*)$", at)
        restart_cmd = m.group(1)
        assert f"--port {port + 1}" in restart_cmd and f"--advertise {url1}" in restart_cmd
        assert "--etcd http://127.0.0.1:" in restart_cmd and "server.log" in restart_cmd

        # the others keep serving: they drop the dead node and take writes and reads
        survivors = [i for i in range(3) if i != 1]
        _until(lambda: all(_members(urls[i]) == sorted(nodes[j][1] for j in survivors)
                           for i in survivors))
        for i in survivors:
            obj = make_client(urls[i]).bucket("b").object(f"o{i}")
            obj.get_writer().put_content(b"x" * 100)
            assert obj.get_reader().read_all() == b"x" * 100
        assert p.poll() is None

        p.send_signal(signal.SIGHUP)
        m, at = out.wait_for(r"node 1 restarted \(pid (\d+)\)", at)
        assert int(m.group(1)) != pid1
        _until(lambda: all(_members(u) == sorted(n[1] for n in nodes.values()) for u in urls))
        assert make_client(urls[1]).bucket("b").object("o0").get_reader().read_all() == b"x" * 100
    finally:
        _stop(p, out, data)


def test_restart_exited_starts_a_killed_node_again_by_itself(tmp_path):
    p, out, data, nodes = _start(tmp_path, 1, "--restart-exited")
    try:
        url, _, pid = nodes[0]
        os.killpg(pid, signal.SIGKILL)
        _, at = out.wait_for(r"node 0 .* exited: killed by SIGKILL; .* Restarting it "
                             r"\(--restart-exited\)", len(out.lines))
        m, _ = out.wait_for(r"node 0 restarted \(pid (\d+)\)", at)
        assert int(m.group(1)) != pid
        assert requests.get(url + "/v1/health", timeout=5).status_code == 200
    finally:
        _stop(p, out, data)
