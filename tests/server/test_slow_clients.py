"""Slow, idle and vanishing clients cannot stall a node: request heads (and small bodies)
are read by the worker's event loop under deadlines, connections are capped per process
and per client address, and idle keep-alive connections close after `keepalive`, not
before. Deadlines are set short through GETBATCH_* variables in the node's environment."""
import json
import select
import statistics
import time

import pytest
import requests

from getbatch.server.conn import body_length, head_end

from tests.support.nodes import Node, make_client, serve_argv
from .hostile import Hostile, accepted_all, connect

HEADER_TIMEOUT = 1.5
BODY_TIMEOUT = 1.5
KEEPALIVE = 3.0
DEADLINES = {"GETBATCH_HEADER_TIMEOUT": str(HEADER_TIMEOUT), "GETBATCH_BODY_TIMEOUT": str(BODY_TIMEOUT),
             "GETBATCH_KEEPALIVE": str(KEEPALIVE)}
HEALTH = b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    d = tmp_path_factory.mktemp("guarded")
    n = Node(d / "data", d / "server.log", serve_argv(workers=2, threads=4), env=DEADLINES)
    assert requests.post(f"{n.url}/v1/buckets/hostile?provider=ais", json={"action": "create-bck"}).ok
    yield n
    n.stop()


def _response(s, timeout=5, f=None):
    """One whole response (status line, headers, Content-Length body) from a blocking socket;
    pass `f` (s.makefile("rb")) to read several pipelined ones."""
    s.settimeout(timeout)
    f = f or s.makefile("rb")
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = f.readline()
        if not line:
            return head
        head += line
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    return head + f.read(length)


def _until_closed(s, timeout, t0=None):
    """Everything the server still sends, and the seconds from `t0` (default: now) until it
    closed the connection."""
    t0 = time.monotonic() if t0 is None else t0
    s.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    return data, time.monotonic() - t0


def _error_body(answer):
    return json.loads(answer.partition(b"\r\n\r\n")[2])


def test_hostile_connections_do_not_stall_normal_clients(guarded):
    hostile = Hostile(guarded.port, idle=100, slow=100, stalled=60, vanishing=3, replace=True)
    hostile.start()
    time.sleep(0.5)
    client = make_client(guarded.url, timeout=(5, 10))
    b = client.bucket("calm")
    b.create(exist_ok=True)
    data = bytes(range(256)) * 40
    latency = {"health": [], "put": [], "get": [], "batch": []}
    failures = []

    def timed(what, call):
        t0 = time.monotonic()
        try:
            call()
        except Exception as exc:   # a stalled node shows up as timeouts: collect, then fail clearly
            failures.append(f"{what}: {exc!r}")
        latency[what].append(time.monotonic() - t0)

    def check_get(name):
        assert b.object(name).get_reader().read_all() == data

    def check_batch(names):
        got = [(info.obj_name, d) for info, d in client.batch(names, bucket=b).get()]
        assert got == [(n, data) for n in names]

    try:
        end = time.monotonic() + 8
        i = 0
        while time.monotonic() < end and len(failures) < 3:
            name = f"o{i}"
            timed("health", lambda: requests.get(guarded.url + "/v1/health",
                                                 timeout=(5, 10)).raise_for_status())
            timed("put", lambda: b.object(name).get_writer().put_content(data))
            timed("get", lambda: check_get(name))
            timed("batch", lambda: check_batch([name, "o0"]))
            i += 1
    finally:
        hostile.stop()
    worst = {k: round(max(v), 2) for k, v in latency.items() if v}
    typical = {k: round(statistics.median(v), 2) for k, v in latency.items() if v}
    assert not failures, (failures, worst)
    # a node the hostile connections hold up makes every request wait about a header
    # deadline; a busy machine makes some slow, not the typical one
    assert all(t < HEADER_TIMEOUT for t in typical.values()), (typical, worst)
    assert i >= 3, f"only {i} rounds of requests in 8 s: {typical} {worst}"

    # every kind of hostile connection was closed at its deadline, not before
    life = hostile.lifetimes
    assert len(life["idle"]) >= 100 and len(life["slow"]) >= 100 and len(life["stalled"]) >= 60, \
        {k: len(v) for k, v in life.items()}
    for kind, limit in (("idle", HEADER_TIMEOUT), ("slow", HEADER_TIMEOUT), ("stalled", BODY_TIMEOUT)):
        # lifetimes are counted from before the connect, so a late client thread makes them
        # longer, never shorter: the lower bound holds on any machine. The upper one has room
        # for a busy machine and still fails a node that lets them run to the end (8 s)
        shortest, typical = min(life[kind]), statistics.median(life[kind])
        assert limit - 0.15 < shortest and typical < limit + 3.5, (kind, shortest, typical)
    # a partial head or a stalled body is told why; an idle connection is just closed
    assert all(a.startswith(b"HTTP/1.1 408") for a in hostile.answers["slow"] + hostile.answers["stalled"])
    # (a byte the client sends after the close may reset the connection before it reads the 408)
    assert len(hostile.answers["slow"]) >= 0.9 * len(life["slow"])
    assert not hostile.answers["idle"]
    assert hostile.opened["vanishing"] > 100
    log = guarded.log()
    assert "Traceback" not in log and "Error handling request" not in log, log[-3000:]
    assert "slow, idle or excess client connections:" in log


def test_stalled_large_body_fails_with_408_and_frees_the_connection(guarded):
    # over 1 MiB, so a thread reads it: each recv waits at most body_timeout
    s = connect(guarded.port, blocking=True)
    t0 = time.monotonic()   # before the last byte is sent: `secs` is never short
    s.sendall(b"PUT /v1/objects/hostile/big?provider=ais HTTP/1.1\r\nHost: x\r\n"
              b"Content-Length: 4000000\r\n\r\n" + b"x" * 100_000)
    answer, secs = _until_closed(s, 10 + BODY_TIMEOUT, t0)   # (a connection left open fails)
    s.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert "body_timeout" in _error_body(answer)["message"]
    assert BODY_TIMEOUT - 0.2 < secs
    assert requests.get(f"{guarded.url}/v1/objects/hostile/big?provider=ais").status_code == 404


def test_keep_alive_head_deadline_starts_with_the_first_byte(guarded):
    s = connect(guarded.port, blocking=True)
    s.sendall(HEALTH)
    assert _response(s).startswith(b"HTTP/1.1 200")
    # idle past header_timeout (the keepalive deadline applies), then a head in two parts
    # sent well within header_timeout: a late test thread has over a second of slack either way
    time.sleep(HEADER_TIMEOUT + 0.2)
    s.sendall(HEALTH[:10])
    time.sleep(0.1)
    s.sendall(HEALTH[10:])
    assert _response(s).startswith(b"HTTP/1.1 200")
    s.close()


def test_idle_keep_alive_connection_closes_after_keepalive(guarded):
    s = connect(guarded.port, blocking=True)
    t0 = time.monotonic()   # before the request: the keep-alive wait starts later, never earlier
    s.sendall(HEALTH)
    assert _response(s).startswith(b"HTTP/1.1 200")
    rest, secs = _until_closed(s, 10 + KEEPALIVE, t0)   # (a connection left open fails)
    s.close()
    assert rest == b"" and KEEPALIVE - 0.2 < secs, secs


def test_sdk_keeps_its_connection_across_pauses_shorter_than_keepalive(guarded):
    client = make_client(guarded.url)
    b = client.bucket("calm")
    b.create(exist_ok=True)
    b.object("ka").get_writer().put_content(b"k" * 5000)
    for _ in range(4):
        time.sleep(HEADER_TIMEOUT + 0.2)  # longer than header_timeout, shorter than keepalive
        assert b.object("ka").get_reader().read_all() == b"k" * 5000
        assert [d for _, d in client.batch(["ka"], bucket=b).get()] == [b"k" * 5000]
    pools = client._request_client.session_manager.session.get_adapter(guarded.url).poolmanager.pools
    assert [(pools[k].num_connections, pools[k].num_requests) for k in pools.keys()] == [(1, 10)]


def test_pipelined_requests_are_all_answered(guarded):
    s = connect(guarded.port, blocking=True)
    put = (b"PUT /v1/objects/hostile/p?provider=ais HTTP/1.1\r\nHost: x\r\n"
           b"Content-Length: 5\r\n\r\nhello")
    get = b"GET /v1/objects/hostile/p?provider=ais HTTP/1.1\r\nHost: x\r\n\r\n"
    s.sendall(HEALTH + put + get)
    f = s.makefile("rb")
    answers = [_response(s, f=f) for _ in range(3)]
    s.close()
    assert [a[:12] for a in answers] == [b"HTTP/1.1 200"] * 3
    assert answers[2].endswith(b"\r\n\r\nhello")


def test_oversized_head_is_refused_with_431(guarded):
    s = connect(guarded.port, blocking=True)
    s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n" + b"X-Long: " + b"a" * (40 << 10))
    answer, _ = _until_closed(s, 5)
    s.close()
    assert answer.startswith(b"HTTP/1.1 431"), answer[:100]


def _served_again(node, source, timeout=30.0):
    """A connection from `source` that the server lets in, once it has seen a held one close
    (until then it refuses with 503): polled, not slept for."""
    deadline = time.monotonic() + timeout
    while True:
        s = connect(node.port, source, blocking=True)
        s.sendall(HEALTH)
        answer = _response(s)
        if not answer.startswith(b"HTTP/1.1 503"):
            return answer
        s.close()
        assert time.monotonic() < deadline, "a freed slot was not used again"
        time.sleep(0.05)


def test_per_client_cap_refuses_extra_connections_from_one_address(tmp_path):
    n = Node(tmp_path / "data", tmp_path / "server.log", serve_argv(workers=1, threads=2),
             env={"GETBATCH_MAX_CLIENT_CONNECTIONS": "4", "GETBATCH_HEADER_TIMEOUT": "30"})
    try:
        held = [connect(n.port, "127.0.0.2", blocking=True) for _ in range(4)]
        accepted_all(n.port)
        extra = connect(n.port, "127.0.0.2", blocking=True)
        extra.sendall(HEALTH)
        answer, secs = _until_closed(extra, 25)
        extra.close()
        # refused at once: a connection let in would wait out header_timeout (30 s)
        assert answer.startswith(b"HTTP/1.1 503") and secs < 25, (answer, secs)
        assert b"\r\nRetry-After: 1\r\n" in answer
        body = _error_body(answer)
        assert body["status"] == 503 and "too many connections from 127.0.0.2" in body["message"]
        # other addresses are served meanwhile
        other = connect(n.port, "127.0.0.3", blocking=True)
        other.sendall(HEALTH)
        assert _response(other).startswith(b"HTTP/1.1 200")
        other.close()
        assert requests.get(n.url + "/v1/health", timeout=5).ok
        # a freed slot can be used again
        held.pop().close()
        assert _served_again(n, "127.0.0.2").startswith(b"HTTP/1.1 200")
        for s in held:
            s.close()
    finally:
        n.stop()


def test_max_connections_leaves_the_rest_in_the_backlog(tmp_path):
    n = Node(tmp_path / "data", tmp_path / "server.log", serve_argv(workers=1, threads=2),
             env={"GETBATCH_MAX_CONNECTIONS": "4", "GETBATCH_HEADER_TIMEOUT": "30"})
    try:
        held = [connect(n.port, blocking=True) for _ in range(4)]
        accepted_all(n.port)
        waiting = connect(n.port, blocking=True)   # the kernel completes the handshake
        waiting.sendall(HEALTH)
        assert select.select([waiting], [], [], 1.0)[0] == [], "served beyond max_connections"
        held.pop().close()
        assert _response(waiting, timeout=3).startswith(b"HTTP/1.1 200")
        for s in held + [waiting]:
            s.close()
    finally:
        n.stop()


def test_head_end_and_body_length():
    assert head_end(b"GET / HTTP/1.1\r\nHost: x\r\n") == -1
    assert head_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody") == 27
    assert head_end(b"GET / HTTP/1.1\nHost: x\n\n") == 24          # bare LF: gunicorn answers it
    assert body_length(b"PUT / HTTP/1.1\r\nHost: x\r\ncontent-length: 12\r\n\r\n") == 12
    assert body_length(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == 0
    # left to the thread (and gunicorn's parser): chunked, 100-continue, duplicates, folding, junk
    for extra in (b"Transfer-Encoding: chunked\r\n", b"Expect: 100-continue\r\n",
                  b"Content-Length: 5\r\n", b" folded\r\n", b"Content-Length: -1\r\n"):
        assert body_length(b"PUT / HTTP/1.1\r\nContent-Length: 5\r\n" + extra + b"\r\n") == 0, extra
