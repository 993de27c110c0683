"""`getbatch serve` stops cleanly and promptly: Ctrl-C (SIGINT to the whole process group,
as a terminal sends it) after SDK traffic, many times over, and SIGTERM, which lets a
request in flight finish."""
import os
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from getbatch.store.local import LocalStore

from tests.support.nodes import Node, make_client, serve_argv
from tests.support.waiting import until

ROUNDS = 20


def _start(tmp_path, i=0):
    """A node of one worker, its output in its own log file per round."""
    return Node(tmp_path / "data", tmp_path / f"server-{i}.log", serve_argv(workers=1, threads=2))


def _stop(node, sig):
    """Signal the node's whole group; (seconds until the server exited, its output)."""
    t0 = time.monotonic()
    os.killpg(node.proc.pid, sig)
    try:
        node.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pass   # node.stop() ends it; _assert_clean reports the exit code
    return time.monotonic() - t0, node.log()


def _sdk_traffic(url, i):
    client = make_client(url, timeout=(5, 30))
    b = client.bucket("stop")
    b.create(exist_ok=True)
    b.object(f"a{i}").get_writer().put_content(b"a" * 1000)
    b.object("b").get_writer().put_content(b"b" * 70_000)
    assert b.object(f"a{i}").get_reader().read_all() == b"a" * 1000
    got = [(info.obj_name, data) for info, data in client.batch([f"a{i}", "b"], bucket=b).get()]
    assert got == [(f"a{i}", b"a" * 1000), ("b", b"b" * 70_000)]
    return client   # still referenced: its keep-alive connections stay open over the stop


def _assert_clean(rc, secs, out, what, limit=30.0):
    # A stop that waited on idle keep-alive connections runs into gunicorn's deadline
    # (graceful_timeout, or 2 s after Ctrl-C), which SIGKILLs the workers and logs it: the log
    # check finds that, however loaded the machine. The time bound only catches a stop that
    # hangs.
    assert rc == 0, f"{what}: exit code {rc}\n{out}"
    assert "SIGKILL" not in out and "Traceback" not in out, f"{what}:\n{out}"
    assert secs < limit, f"{what}: took {secs:.2f}s to stop\n{out}"


def _round(base, i, sig):
    """One node started, used by the SDK, then sent `sig` (to its whole group); the
    seconds it took to stop."""
    base.mkdir()
    node = _start(base, i)
    try:
        client = _sdk_traffic(node.url, i)
        secs, out = _stop(node, sig)
        rc = node.proc.returncode
    finally:
        node.stop()
    del client
    _assert_clean(rc, secs, out, f"{sig.name}, round {i}")
    return secs


def _rounds(tmp_path, n, sig):
    """`n` rounds, two at a time (a round mostly waits on its node), each node on its own
    data dir; their stop times."""
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda i: _round(tmp_path / f"round{i}", i, sig), range(n)))


@pytest.mark.slow
def test_ctrl_c_after_sdk_traffic_stops_cleanly_every_time(tmp_path):
    times = _rounds(tmp_path, ROUNDS, signal.SIGINT)
    print(f"Ctrl-C stop times: max {max(times):.2f}s, mean {sum(times) / len(times):.2f}s")


def test_sigterm_stops_promptly_after_sdk_traffic(tmp_path):
    # idle keep-alive connections stay open STOP_LINGER (0.5 s) for a request in flight
    _rounds(tmp_path, 3, signal.SIGTERM)


def _upload_started(data_dir):
    """Whether the node wrote an upload's first bytes (a file in its temp directory): the
    request is then in flight, however slowly the machine runs."""
    return any(e.stat().st_size for e in os.scandir(os.path.join(data_dir, ".sys", "tmp")))


def test_sigterm_lets_the_request_in_flight_finish(tmp_path):
    node = _start(tmp_path)
    try:
        assert requests.post(node.url + "/v1/buckets/inflight?provider=ais", json={"action": "create-bck"}).ok
        body = os.urandom(3 << 20)    # larger than the loop buffers: a thread reads it
        s = socket.create_connection(("127.0.0.1", node.port))
        s.sendall(b"PUT /v1/objects/inflight/o?provider=ais HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body[:1 << 20])
        until(lambda: _upload_started(tmp_path / "data"), "the upload did not start")
        t0 = time.monotonic()
        os.killpg(node.proc.pid, signal.SIGTERM)
        time.sleep(0.3)
        s.sendall(body[1 << 20:])
        s.settimeout(30)
        answer = s.recv(4096)
        closed = s.recv(4096) == b""      # then the stopping worker closes the connection
        s.close()
        node.proc.wait(timeout=60)
        secs = time.monotonic() - t0
        rc, out = node.proc.returncode, node.log()
    finally:
        node.stop()
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert closed
    _assert_clean(rc, secs, out, "SIGTERM with a request in flight")
    f, _ = LocalStore(str(tmp_path / "data")).open("inflight", "o")
    with f:
        assert f.read() == body
