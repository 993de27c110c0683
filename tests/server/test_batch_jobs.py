"""GetBatch jobs on a real node (2 worker processes): a batch read slowly shows as streaming
with progress, then done; a client that goes away leaves it aborted; a 404 batch is failed;
`getbatch show job` prints the table with its Total row, or the JSON, and refreshes."""
import json
import os
import socket
import subprocess
import sys
import time

import pytest
import requests

from tests.support.nodes import Node, make_client, serve_argv
from tests.support.waiting import until

CLI = [sys.executable, "-m", "getbatch.cli", "show", "job"]
MiB = 1 << 20
N_BIG = 48          # 1 MiB objects of the slowly read batch: far more than socket buffers


@pytest.fixture(scope="module")
def jnode(tmp_path_factory):
    d = tmp_path_factory.mktemp("jobs")
    n = Node(d / "data", d / "server.log", serve_argv(workers=2))
    b = make_client(n.url).bucket("jobs")
    b.create()
    blob = os.urandom(MiB)
    for i in range(N_BIG):
        b.object(f"big{i:02d}").get_writer().put_content(blob)
    for i in range(3):
        b.object(f"small{i}").get_writer().put_content(os.urandom(1000 + i))
    yield n
    n.stop()


def jobs(url, finished=True, cluster=True):
    r = requests.get(url + "/v1/jobs", params={"all": str(finished).lower(),
                                               "cluster": str(cluster).lower()}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["jobs"]


def wait_job(url, pred, timeout=15, **kw):
    """The newest job for which pred(job) holds (jobs of other processes lag a flush)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [j for j in jobs(url, **kw) if pred(j)]
        if found:
            return found[-1]
        assert time.monotonic() < deadline, f"no such job in {jobs(url, **kw)}"
        time.sleep(0.05)


def _ended(job_id):
    """Job `job_id` has ended. (Not "is not streaming": a record read from another process's
    file may still say planning, up to a flush behind.)"""
    return lambda j: j["id"] == job_id and j["state"] not in ("planning", "streaming")


def slow_batch(port, names, bucket="jobs"):
    """A streaming GetBatch whose client reads nothing yet (small receive buffer): the
    socket and how many body bytes it promised."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 10)
    s.connect(("127.0.0.1", port))
    body = json.dumps({"in": [{"objname": n} for n in names], "strm": True}).encode()
    s.sendall(f"GET /v1/ml/moss/{bucket} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
              f"\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 200"), head
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    return s, length


def show(url, *args):
    return subprocess.run(CLI + ["--url", url, *args], capture_output=True, text=True,
                          timeout=60)


def test_running_batch_streams_with_progress_then_done(jnode):
    names = [f"big{i:02d}" for i in range(N_BIG)]
    s, length = slow_batch(jnode.port, names)
    got = 0

    def progressing(j):
        return j["total"] == N_BIG and j["state"] == "streaming" and 0 < j["entries"] < N_BIG

    try:
        # read slowly until the job shows progress: entries count as each slice of the body
        # is handed to the socket
        deadline = time.monotonic() + 20
        while not [j for j in jobs(jnode.url, finished=False) if progressing(j)]:
            assert time.monotonic() < deadline and got < length / 2, "no progress shown"
            for _ in range(8):
                got += len(s.recv(64 << 10))
            time.sleep(0.05)
        job = wait_job(jnode.url, progressing, finished=False)
        assert 0 < job["bytes"] < job["size"] == length
        assert job["client"] == "127.0.0.1" and job["bucket"] == "jobs"
        # the table shows it as running, with done/total and how far it is
        out = show(jnode.url)
        assert out.returncode == 0, out.stderr
        row = next(line for line in out.stdout.splitlines() if job["id"] in line.split())
        assert f"/{N_BIG}" in row and "streaming" in row and "%" in row, row
        while got < length:
            chunk = s.recv(MiB)
            assert chunk, "the body ended early"
            got += len(chunk)
    finally:
        s.close()
    done = wait_job(jnode.url, lambda j: j["id"] == job["id"] and j["state"] == "done")
    assert (done["entries"], done["bytes"], done["error"]) == (N_BIG, length, "")
    assert done["end_ns"] >= done["start_ns"] > 0
    # finished: listed with --all only (once every process's file says so: a flush behind)
    until(lambda: job["id"] not in {j["id"] for j in jobs(jnode.url, finished=False)},
          "a finished job still listed as running")


def test_client_that_goes_away_aborts_the_job(jnode):
    names = [f"big{i:02d}" for i in reversed(range(N_BIG - 1))]
    s, _ = slow_batch(jnode.port, names)
    job = wait_job(jnode.url, lambda j: j["total"] == N_BIG - 1 and j["state"] == "streaming",
                   finished=False)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()   # a reset: the server's next send fails
    gone = wait_job(jnode.url, _ended(job["id"]))
    assert gone["state"] == "aborted", gone
    assert "went away" in gone["error"] and gone["entries"] < N_BIG - 1


def test_a_running_batch_can_be_stopped(jnode):
    """`PUT /v1/cluster {"action": "stop"}` (client.job(id).abort()) stops a GetBatch too: its
    stream ends short of its length (never a valid-looking archive), the job says why, and
    its status reads as an aborted job's."""
    names = [f"big{i:02d}" for i in range(N_BIG - 2)]
    s, length = slow_batch(jnode.port, names)
    try:
        job = wait_job(jnode.url, lambda j: j["total"] == N_BIG - 2 and j["state"] == "streaming",
                       finished=False)
        r = requests.put(jnode.url + "/v1/cluster",
                         json={"action": "stop", "value": {"ID": job["id"]}}, timeout=10)
        assert r.status_code == 200, r.text
        got, deadline = 0, time.monotonic() + 30
        s.settimeout(30)
        while True:   # the client reads slowly what was sent, then the stream ends short
            try:
                chunk = s.recv(64 << 10)
            except OSError:
                break
            if not chunk:
                break
            got += len(chunk)
            assert time.monotonic() < deadline
            time.sleep(0.005)
        assert got < length
    finally:
        s.close()
    stopped = wait_job(jnode.url, _ended(job["id"]))
    assert stopped["state"] == "aborted" and stopped["error"] == "stopped on request", stopped
    r = requests.get(jnode.url + "/v1/cluster", params={"what": "status"},
                     json={"ID": job["id"]}, timeout=10)
    assert r.status_code == 200 and r.json()["aborted"] is True, r.text


def test_batch_answered_404_is_a_failed_job(jnode):
    r = requests.get(jnode.url + "/v1/ml/moss/jobs",
                     json={"in": [{"objname": "small0"}, {"objname": "no-such-object"}]})
    assert r.status_code == 404
    job = wait_job(jnode.url, lambda j: "no-such-object" in j["error"])
    assert job["state"] == "failed" and job["error"].startswith("404 ")
    assert job["end_ns"] >= job["start_ns"]


def test_show_job_json_and_table_total(jnode):
    for n in (1, 3):
        r = requests.get(jnode.url + "/v1/ml/moss/jobs",
                         json={"in": [{"objname": f"small{i}"} for i in range(n)]})
        assert r.status_code == 200
    wait_job(jnode.url, lambda j: j["total"] == 3 and j["state"] == "done")
    out = show(jnode.url, "--all", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["errors"] == {}
    recs = doc["jobs"]
    assert [r["start_ns"] for r in recs] == sorted(r["start_ns"] for r in recs)
    assert {"done", "failed"} <= {r["state"] for r in recs}
    assert all(r["kind"] == "get-batch" and r["node"] == recs[0]["node"] for r in recs)
    table = show(jnode.url, "--all")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["NODE", "ID", "KIND", "BUCKET", "OBJECTS", "BYTES", "START",
                                "END", "STATE"]
    assert len(lines) == len(recs) + 2   # nothing ran in between: the same jobs
    for r in recs:
        assert any(r["id"] in line.split() and line.split()[-1] == r["state"] for line in lines[1:-1])
    total = lines[-1].split()
    assert total[0] == "Total:" and int(total[1]) == sum(r["entries"] for r in recs)


def test_show_job_refreshes_and_says_when_nothing_runs(jnode):
    out = show(jnode.url, "--refresh", "0.2", "--count", "2")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("No running GetBatch jobs") == 2


def test_bad_query_is_a_400_and_unreachable_node_one_line(jnode):
    r = requests.get(jnode.url + "/v1/jobs", params={"all": "maybe"})
    assert r.status_code == 400 and "all" in r.json()["message"]
    out = show("http://127.0.0.1:1")
    assert out.returncode == 1 and out.stderr.startswith("getbatch show job: cannot reach")


def test_compressed_batch_counts_its_entries(jnode):
    # .tgz goes through the iterated path (no zero-copy): entries counted there too
    r = requests.get(jnode.url + "/v1/ml/moss/jobs", json={
        "in": [{"objname": f"small{i}"} for i in range(3)] * 2, "mime": ".tgz", "strm": True})
    assert r.status_code == 200
    job = wait_job(jnode.url, lambda j: j["format"] == "tgz" and j["state"] == "done")
    assert (job["entries"], job["total"], job["size"]) == (6, 6, None)
    assert job["bytes"] == len(r.content)
