"""The zero-copy path is really taken: strace shows sendfile(2) for large batch items."""
import io
import re
import shutil
import socket
import tarfile

import pytest
import requests

from tests.support.nodes import Node, serve_argv


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    if shutil.which("strace") is None:
        pytest.skip("needs strace (Debian package strace; .ci/run installs it)")
    d = tmp_path_factory.mktemp("traced")
    trace = d / "trace.txt"
    argv = ["strace", "-f", "-qq", "-e", "trace=sendfile", "-o", str(trace)] + serve_argv(workers=1)
    n = Node(d / "data", d / "server.log", argv, env={"GETBATCH_SENDFILE_LOOPBACK": "1"})
    yield n, trace
    n.stop()


def test_large_items_leave_with_sendfile(traced):
    node, trace = traced
    base = f"{node.url}/v1"
    assert requests.post(f"{base}/buckets/zc?provider=ais", json={"action": "create-bck"}).ok
    big = bytes(range(256)) * 4096                     # 1 MiB: above the sendfile threshold
    small = b"s" * 4096
    assert requests.put(f"{base}/objects/zc/big?provider=ais", data=big).ok
    assert requests.put(f"{base}/objects/zc/small?provider=ais", data=small).ok
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in (("pre", b"p" * 700), ("member", big)):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    assert requests.put(f"{base}/objects/zc/shard.tar?provider=ais", data=buf.getvalue()).ok
    r = requests.get(f"{base}/ml/moss/zc", json={"in": [{"objname": "big"}, {"objname": "small"},
                                                        {"objname": "shard.tar", "archpath": "member"}],
                                                 "strm": True})
    assert r.status_code == 200 and r.content.count(big) == 2 and small in r.content
    calls = [(int(off), int(n)) for off, n in
             re.findall(r"sendfile\(\d+, \d+, \[(\d+)\] => \[\d+\], (\d+)\) = \d+", trace.read_text())]
    assert (0, len(big)) in calls, calls                  # the whole object
    assert (512 + 1024 + 512, len(big)) in calls, calls   # the member, at its offset in the shard
    assert all(n != len(small) for _, n in calls), "small items must go through the buffer"


def test_sendfile_policy_by_peer():
    from getbatch.config import Config
    from getbatch.server import wrappers

    config = Config()

    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    c = socket.create_connection(ls.getsockname())
    s, _ = ls.accept()
    a, b = socket.socketpair()
    try:
        assert wrappers.sendfile_min_for(s, config) == wrappers.NEVER       # loopback: copies are faster
        assert wrappers.sendfile_min_for(a, config) == wrappers.NEVER       # unix socket: local too
        loopback = config.replace(sendfile_loopback=True, sendfile_min=4096)
        assert wrappers.sendfile_min_for(s, loopback) == 4096
    finally:
        for x in (ls, c, s, a, b):
            x.close()


def test_stalled_client_loses_its_batch_not_the_thread(tmp_path):
    import json
    import time

    n = Node(tmp_path / "data", tmp_path / "server.log", serve_argv(workers=1, threads=2),
             env={"GETBATCH_SEND_TIMEOUT": "1"})
    try:
        base = f"{n.url}/v1"
        assert requests.post(f"{base}/buckets/st?provider=ais", json={"action": "create-bck"}).ok
        assert requests.put(f"{base}/objects/st/big?provider=ais", data=b"x" * (4 << 20)).ok
        body = json.dumps({"in": [{"objname": "big"}] * 50, "strm": True}).encode()
        s = socket.create_connection(("127.0.0.1", n.port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"GET /v1/ml/moss/st HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        deadline = time.monotonic() + 20
        while "aborted after the status line" not in n.log() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "client did not accept data" in n.log()
        s.close()
        r = requests.get(f"{base}/ml/moss/st", json={"in": [{"objname": "big"}], "strm": True})
        assert r.status_code == 200 and len(r.content) == 512 + (4 << 20) + 1024
    finally:
        n.stop()
