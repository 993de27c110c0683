"""What the operator reads: one line per GetBatch, refusals with their reason, the access log."""
import re
import time

import requests

from tests.support.nodes import Node, serve_argv


def wait_for(node, pattern, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, node.log())
        if m:
            return m
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} not in the log:\n{node.log()[-3000:]}")


def test_batch_lines_refusals_and_access_log(tmp_path):
    n = Node(tmp_path / "data", tmp_path / "server.log", serve_argv(workers=1, threads=2),
             env={"GETBATCH_ACCESS_LOG": "true", "GETBATCH_MAX_BODY": "4KiB"})
    try:
        requests.post(f"{n.url}/v1/buckets/lb", json={"action": "create-bck"}).raise_for_status()
        for name in ("a", "b"):
            requests.put(f"{n.url}/v1/objects/lb/{name}", data=b"12345").raise_for_status()
        body = {"in": [{"objname": "a"}, {"objname": "b"}, {"objname": "gone"}], "coer": True,
                "strm": True}
        r = requests.get(f"{n.url}/v1/ml/moss/lb", json=body)
        assert r.status_code == 200
        m = wait_for(n, r"batch (gbt-\w+) done: client 127\.0\.0\.1, 3 entries, (\d+) bytes, "
                        r"[\d.]+ s, 1 soft errors, tar, streaming")
        assert int(m.group(2)) == len(r.content)
        r = requests.get(f"{n.url}/v1/ml/moss/lb", json={"in": [{"objname": "a"}], "mime": "zip"})
        wait_for(n, r"batch gbt-\w+ done: client 127\.0\.0\.1, 1 entries, \d+ bytes, .*zip, multipart")
        assert requests.get(f"{n.url}/v1/ml/moss/lb", json={"in": "x"}).status_code == 400
        wait_for(n, r"INFO getbatch\.server: refused GET '/v1/ml/moss/lb' from 127\.0\.0\.1: 400 "
                    r"moss: .in. must be a list")
        assert requests.get(f"{n.url}/v1/ml/moss/lb", data=b"x" * 5000).status_code == 413
        wait_for(n, r"WARNING getbatch\.server: refused GET '/v1/ml/moss/lb' .*: 413 ")
        assert requests.get(f"{n.url}/v1/objects/lb/missing").status_code == 404
        wait_for(n, r'"GET /v1/objects/lb/missing HTTP/1\.1" 404')
        assert "refused GET '/v1/objects/lb/missing'" not in n.log()  # routine: DEBUG only
        assert "Traceback" not in n.log()
    finally:
        n.stop()
