"""GET /metrics: the reference's counters under their AIS names, counted right across the
gunicorn workers of a node, surviving a killed worker; histograms of batches and objects."""
import os
import re
import signal
import socket

import falcon
import falcon.testing
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from getbatch.server.errors import AISError
from getbatch.server.metrics import AIS_COUNTERS, install

from tests.support.nodes import Node, serve_argv
from tests.support.waiting import until
from tests.archive.tarhelp import make_tar as _tar

NODE_ID = "t[metrics.node]"


@pytest.fixture(scope="module")
def mnode(tmp_path_factory):
    d = tmp_path_factory.mktemp("mnode")
    n = Node(d / "data", d / "server.log", serve_argv(workers=2, threads=2),
             env={"GETBATCH_NODE_ID": NODE_ID})
    yield n
    n.stop()


_SAMPLE = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)')
_LABEL = re.compile(r'([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """{(sample name, sorted labels): value} and {family: type}, read as Prometheus's own
    parser reads the text format (prometheus-client's adds `_total` to counter samples);
    prometheus-client's parser must accept it too."""
    list(text_string_to_metric_families(text))
    out, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
        elif line and not line.startswith("#"):
            m = _SAMPLE.fullmatch(line)
            assert m, line
            labels = tuple(sorted(_LABEL.findall(m.group(2) or "")))
            out[(m.group(1), labels)] = float(m.group(3))
    return out, types


def scrape(url):
    """parse() of the node's /metrics without the node_id label, checking that every sample
    carries the node's id (dots made underscores, as AIStore does)."""
    r = requests.get(url + "/metrics", timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples, types = parse(r.text)
    out = {}
    for (name, labels), v in samples.items():
        assert ("node_id", "t[metrics_node]") in labels, (name, labels)
        out[(name, tuple(kv for kv in labels if kv[0] != "node_id"))] = v
    return out, types, r.text


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def diff(before, after, names):
    return {n: value(after, n) - value(before, n) for n in names}


def _counted(url, before, names):
    """diff() since `before` once the node has counted a batch, else None."""
    got = diff(before, scrape(url)[0], names)
    return got if got["ais_target_getbatch_count"] else None


def _put(url, bucket, name, data):
    r = requests.put(f"{url}/v1/objects/{bucket}/{name}", data=data, timeout=10)
    assert r.status_code == 200, r.text


def _bucket(url, name):
    r = requests.post(f"{url}/v1/buckets/{name}", json={"action": "create-bck"}, timeout=10)
    assert r.status_code in (200, 409), r.text


def _moss(url, bucket, entries, **opts):
    return requests.get(f"{url}/v1/ml/moss/{bucket}", json={"in": entries, **opts}, timeout=30)


def _workers(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def test_ais_counter_names_are_exported_as_counters_without_total(mnode):
    samples, types, text = scrape(mnode.url)
    for name, _ in AIS_COUNTERS:
        assert f"# TYPE {name} counter\n" in text
        assert (name, ()) in samples, name
        assert name + "_total" not in text
    assert types["getbatch_batch_duration_seconds"] == "histogram"
    assert types["getbatch_batch_ttfb_seconds"] == "histogram"
    assert types["getbatch_batch_entries"] == "histogram"
    assert types["getbatch_object_duration_seconds"] == "histogram"
    assert types["getbatch_http_429_total"] == "counter"
    assert "_created" not in text


def test_a_batch_is_counted_by_kind_with_soft_errors_and_histograms(mnode):
    url = mnode.url
    _bucket(url, "m1")
    _put(url, "m1", "a.bin", b"a" * 1000)
    _put(url, "m1", "empty", b"")
    _put(url, "m1", "s.tar", _tar([("x.txt", b"x" * 70), ("y.txt", b"y" * 5)]))
    names = [n for n, _ in AIS_COUNTERS] + ["getbatch_batch_entries_count",
                                            "getbatch_batch_entries_sum",
                                            "getbatch_batch_ttfb_seconds_count",
                                            "getbatch_batch_duration_seconds_count"]
    before, _, _ = scrape(url)
    r = _moss(url, "m1", [{"objname": "a.bin", "start": 10, "length": 100}, {"objname": "a.bin"},
                          {"objname": "empty"}, {"objname": "s.tar", "archpath": "x.txt"},
                          {"objname": "s.tar/y.txt"}, {"objname": "missing"}],
              strm=True, coer=True)
    assert r.status_code == 200
    r.close()
    # counted when the body closes, just after the client has it
    got = until(lambda: _counted(url, before, names), "the batch was not counted")
    after, _, _ = scrape(url)
    assert got == {
        "ais_target_getbatch_count": 1, "ais_target_err_getbatch_count": 0,
        # the empty object is not counted (zero-size deliveries are not, as in AIS)
        "ais_target_getbatch_obj_count": 2, "ais_target_getbatch_obj_bytes": 1100,
        "ais_target_getbatch_file_count": 2, "ais_target_getbatch_file_bytes": 75,
        "ais_target_err_soft_getbatch_count": 1,
        "ais_target_getbatch_gfn_count": 0, "ais_target_err_gfn_getbatch_count": 0,
        "ais_target_getbatch_rxwait_ns": 0, "ais_target_getbatch_throttle_ns": 0,
        "getbatch_batch_entries_count": 1, "getbatch_batch_entries_sum": 6,
        "getbatch_batch_ttfb_seconds_count": 1, "getbatch_batch_duration_seconds_count": 1,
    }
    assert value(after, "getbatch_batch_entries_bucket", le="4.0") == value(
        before, "getbatch_batch_entries_bucket", le="4.0")
    assert value(after, "getbatch_batch_entries_bucket", le="16.0") == value(
        before, "getbatch_batch_entries_bucket", le="16.0") + 1


def test_failed_batches_are_hard_errors(mnode):
    url = mnode.url
    _bucket(url, "m2")
    names = ["ais_target_getbatch_count", "ais_target_err_getbatch_count",
             "ais_target_getbatch_obj_count", "getbatch_batch_ttfb_seconds_count"]
    before, _, _ = scrape(mnode.url)
    assert _moss(url, "m2", [{"objname": "missing"}]).status_code == 404
    assert _moss(url, "m2", [{"objname": "../x"}]).status_code == 400
    after, _, _ = scrape(mnode.url)
    assert diff(before, after, names) == {
        "ais_target_getbatch_count": 2, "ais_target_err_getbatch_count": 2,
        "ais_target_getbatch_obj_count": 0, "getbatch_batch_ttfb_seconds_count": 0}


def test_a_batch_cut_short_by_its_client_is_a_hard_error(mnode):
    url = mnode.url
    _bucket(url, "m3")
    big = os.urandom(4 << 20)
    for i in range(8):
        _put(url, "m3", f"big{i}", big)
    names = ["ais_target_getbatch_count", "ais_target_err_getbatch_count",
             "ais_target_getbatch_obj_count"]
    before, _, _ = scrape(url)
    body = ('{"in":[%s],"strm":true}' % ",".join(
        '{"objname":"big%d"}' % i for i in range(8))).encode()
    with socket.create_connection(("127.0.0.1", mnode.port)) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"GET /v1/ml/moss/m3 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
        assert s.recv(12).startswith(b"HTTP/1.1 200")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    got = until(lambda: _counted(url, before, names), "the batch was not counted")
    assert got == {"ais_target_getbatch_count": 1, "ais_target_err_getbatch_count": 1,
                   "ais_target_getbatch_obj_count": 0}


def test_object_requests_sum_over_workers_and_survive_a_killed_worker(mnode):
    url = mnode.url
    _bucket(url, "m4")
    _put(url, "m4", "o", b"o" * 300)
    before, _, _ = scrape(url)
    n = 40
    for _ in range(n):
        # a new connection each: both workers serve some
        r = requests.get(f"{url}/v1/objects/m4/o", headers={"Connection": "close"}, timeout=10)
        assert r.content == b"o" * 300
    assert requests.get(f"{url}/v1/objects/m4/nope", timeout=10).status_code == 404
    after, _, _ = scrape(url)
    assert value(after, "getbatch_object_requests_total", op="get") - value(
        before, "getbatch_object_requests_total", op="get") == n + 1
    assert value(after, "getbatch_object_errors_total", op="get") - value(
        before, "getbatch_object_errors_total", op="get") == 1
    assert value(after, "getbatch_object_bytes_total", op="get") - value(
        before, "getbatch_object_bytes_total", op="get") == 300 * n
    assert value(after, "getbatch_object_duration_seconds_count", op="get") - value(
        before, "getbatch_object_duration_seconds_count", op="get") == n
    assert value(after, "getbatch_object_requests_total", op="put") >= 1
    # every worker answers for the whole node
    for _ in range(6):
        again, _, _ = scrape(url)
        assert value(again, "getbatch_object_requests_total", op="get") == value(
            after, "getbatch_object_requests_total", op="get")

    workers = _workers(mnode.proc.pid)
    assert len(workers) == 2
    metrics_dir = os.path.join(mnode.data_dir, ".sys", "metrics", str(mnode.port))
    files = set(os.listdir(metrics_dir))
    assert {f"counter_{w}.db" for w in workers} <= files, files
    os.kill(workers[0], signal.SIGKILL)
    until(lambda: (now := _workers(mnode.proc.pid)) and len(now) == 2 and workers[0] not in now,
          "the killed worker was not replaced")
    final, _, _ = scrape(url)
    for key in ("getbatch_object_requests_total", "getbatch_object_bytes_total"):
        assert value(final, key, op="get") == value(after, key, op="get"), key
    for name, _ in AIS_COUNTERS:
        assert value(final, name) == value(after, name), name
    # the dead worker's live gauge is gone (child_exit); its counters stay
    until(lambda: f"gauge_livesum_{workers[0]}.db" not in os.listdir(metrics_dir),
          "child_exit did not mark the worker dead")
    assert f"counter_{workers[0]}.db" in os.listdir(metrics_dir)
    assert value(final, "getbatch_batches_running") == 0


def test_429_answers_are_counted_and_a_rejected_batch_is_a_hard_error(tmp_path):
    """Whatever answers 429 is counted (one process here; admission control is one of them)."""
    class Busy:
        def on_get(self, req, resp, **params):
            raise AISError(429, "too many batches")

    app = falcon.App()
    app.add_route("/v1/ml/moss/{bucket}", Busy())
    app.add_route("/v1/objects/{bucket}/{obj}", Busy())
    install(app, NODE_ID)
    client = falcon.testing.TestClient(app)
    assert client.simulate_get("/v1/ml/moss/b", body="{}").status_code == 429
    assert client.simulate_get("/v1/ml/moss/b", body="{}").status_code == 429
    assert client.simulate_get("/v1/objects/b/o").status_code == 429
    samples, _ = parse(client.simulate_get("/metrics").text)
    node = ("node_id", "t[metrics_node]")
    assert samples[("getbatch_http_429_total", (node, ("path", "moss")))] == 2
    assert samples[("getbatch_http_429_total", (node, ("path", "other")))] == 1
    assert samples[("ais_target_err_getbatch_count", (node,))] == 2
    assert samples[("ais_target_getbatch_count", (node,))] == 0   # never became batches
    assert samples[("getbatch_object_errors_total", (node, ("op", "get")))] == 1
