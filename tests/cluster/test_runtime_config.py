"""Runtime configuration on a cluster: a change made through one node reaches every node (the
watched etcd key), and admission control counts per node, never a peer's part of a batch."""
import io
import os
import subprocess
import sys
import tarfile
import time

import requests

OBJ = 1 << 20
N_OBJ = 12


def _data(i):
    return bytes([i]) * OBJ


def _setup(url):
    r = requests.post(f"{url}/v1/buckets/rtc", json={"action": "create-bck"}, timeout=10)
    assert r.status_code in (200, 409), r.text
    for i in range(N_OBJ):
        r = requests.put(f"{url}/v1/objects/rtc/o{i}", data=_data(i), timeout=10,
                         allow_redirects=True)
        assert r.status_code == 200, r.text


def _batch(url, stream=False):
    return requests.get(f"{url}/v1/ml/moss/rtc", stream=stream, timeout=60,
                        json={"in": [{"objname": f"o{i}"} for i in range(N_OBJ)], "strm": True})


def _check(body):
    with tarfile.open(fileobj=io.BytesIO(body)) as tf:
        assert [tf.extractfile(m).read() for m in tf.getmembers()] == [
            _data(i) for i in range(N_OBJ)]


def _origin(url, name):
    return requests.get(f"{url}/v1/config", timeout=10).json()["settings"][name]


def _wait_all(urls, name, value, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        seen = [_origin(u, name)["value"] for u in urls]
        if seen == [value] * len(urls) or time.monotonic() > deadline:
            return seen
        time.sleep(0.1)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "getbatch.cli", "config", *args],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, AIS_ENDPOINT=""))


def test_a_change_through_one_node_reaches_every_node_and_its_budget_is_per_node(cluster):
    urls = cluster.urls
    _setup(urls[0])
    r = _cli("set", "max_batches=1", "max_soft_errs=0", "--url", urls[2])
    assert r.returncode == 0, r.stderr
    try:
        assert _wait_all(urls, "max_batches", "1") == ["1"] * 3
        assert all(_origin(u, "max_soft_errs")["origin"].startswith("runtime (")
                   for u in urls)
        missing = {"in": [{"objname": "nope"}], "coer": True, "strm": True}
        for u in urls:
            r = requests.get(f"{u}/v1/ml/moss/rtc", json=missing, timeout=10)
            assert r.status_code == 400 and "max: 0" in r.text, r.text
        held = _batch(urls[0], stream=True)   # its items come from all three nodes
        assert held.status_code == 200
        r = _batch(urls[0])
        assert r.status_code == 429 and r.headers["Retry-After"] == "1"
        # the other nodes serve their parts of the held batch and still admit one of their own
        other = _batch(urls[1])
        assert other.status_code == 200
        _check(other.content)
        _check(held.content)
    finally:
        r = _cli("reset", "--url", urls[1])
        assert r.returncode == 0, r.stderr
    assert _wait_all(urls, "max_batches", "32") == ["32"] * 3
    assert _origin(urls[0], "max_soft_errs")["origin"] == "default"
