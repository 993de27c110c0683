"""Runtime configuration (getbatch config set / /v1/config) and admission control (429) on a
real two-process node: a change reaches every worker without a restart; beyond its budget a
node answers 429 with Retry-After, never 5xx, and every batch it accepted completes intact."""
import fcntl
import hashlib
import io
import os
import struct
import subprocess
import sys
import tarfile
import threading
import time

import pytest
import requests

from tests.support.nodes import Node, serve_argv
from tests.support.waiting import until

OBJ = 1 << 20
N_OBJ = 12      # a 12 MiB batch: more than loopback socket buffers, so an unread one stays open


def _data(i):
    return hashlib.sha256(str(i).encode()).digest() * (OBJ // 32)


@pytest.fixture(scope="module")
def anode(tmp_path_factory):
    d = tmp_path_factory.mktemp("anode")
    n = Node(d / "data", d / "server.log", serve_argv(workers=2, threads=8))
    r = requests.post(f"{n.url}/v1/buckets/adm", json={"action": "create-bck"}, timeout=10)
    assert r.status_code == 200, r.text
    for i in range(N_OBJ):
        r = requests.put(f"{n.url}/v1/objects/adm/o{i}", data=_data(i), timeout=10)
        assert r.status_code == 200, r.text
    yield n
    n.stop()


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "getbatch.cli", "config", *args],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, AIS_ENDPOINT=""))


def _set(url, **kv):
    r = requests.put(f"{url}/v1/config", json={"action": "set-config", "value": kv}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def _reset(url):
    r = requests.put(f"{url}/v1/config", json={"action": "reset-config"}, timeout=10)
    assert r.status_code == 200, r.text


def _batch(url, stream=False, entries=None):
    body = {"in": entries or [{"objname": f"o{i}"} for i in range(N_OBJ)], "strm": True}
    # a new connection each time, so requests spread over both worker processes
    return requests.get(f"{url}/v1/ml/moss/adm", json=body, stream=stream, timeout=60,
                        headers={"Connection": "close"})


def _check_archive(body):
    with tarfile.open(fileobj=io.BytesIO(body)) as tf:
        members = tf.getmembers()
        assert [m.name for m in members] == [f"adm/o{i}" for i in range(N_OBJ)]
        for i, m in enumerate(members):
            assert tf.extractfile(m).read() == _data(i)


def _workers_rss(pid):
    """Bytes resident in the node's processes (the gunicorn master and its workers)."""
    total = 0
    pids = [pid] + [int(p) for p in open(f"/proc/{pid}/task/{pid}/children").read().split()]
    for p in pids:
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except FileNotFoundError:
            pass
    return total


def test_a_runtime_change_reaches_every_worker_and_says_where_it_came_from(anode):
    url = anode.url
    missing = [{"objname": "o0"}, {"objname": "nope1"}, {"objname": "nope2"}]
    body = {"in": missing, "coer": True, "strm": True}
    assert requests.get(f"{url}/v1/ml/moss/adm", json=body, timeout=10).status_code == 200
    r = _cli("set", "max_soft_errs=1", "--url", url)
    assert r.returncode == 0, r.stderr
    assert "max_soft_errs = 1" in r.stdout and "runtime (" in r.stdout
    try:
        for _ in range(12):  # fresh connections: both processes answer
            r = requests.get(f"{url}/v1/ml/moss/adm", json=body, timeout=10,
                             headers={"Connection": "close"})
            assert r.status_code == 400, r.text
            assert "exceeded soft-errors limit: 2 (max: 1)" in r.text
        shown = _cli("show", "--url", url)
        assert shown.returncode == 0, shown.stderr
        line = next(ln for ln in shown.stdout.splitlines() if ln.startswith("max_soft_errs "))
        assert line.split()[1:3] == ["*", "1"] and "runtime (" in line and "by 127.0.0.1" in line
        port = next(ln for ln in shown.stdout.splitlines() if ln.startswith("port "))
        assert "*" not in port.split()[1]
    finally:
        r = _cli("reset", "--url", url)
        assert r.returncode == 0, r.stderr
    for _ in range(6):
        r = requests.get(f"{url}/v1/ml/moss/adm", json=body, timeout=10,
                         headers={"Connection": "close"})
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("pairs, message", [
    (["nosuch=1"], "unknown setting 'nosuch'"),
    (["port=1234"], "port cannot change at run time: it needs a restart"),
    (["max_batches=lots"], "invalid max_batches 'lots': expecting an integer"),
    (["warmup_workers=99"], "invalid warmup_workers '99': must be at most 16"),
    (["window=1KiB"], "invalid window '1KiB': must be at least 1048576"),
])
def test_a_bad_change_is_a_clear_400_and_changes_nothing(anode, pairs, message):
    r = _cli("set", *pairs, "--url", anode.url)
    assert r.returncode == 1
    assert f"400 {message}" in r.stderr and "Traceback" not in r.stderr
    settings = requests.get(f"{anode.url}/v1/config", timeout=10).json()["settings"]
    assert all(s["origin"] == "default" or not s["origin"].startswith("runtime")
               for s in settings.values())


def test_a_value_answered_set_is_in_force(anode):
    """The API once answered 200 for max_wait 1000000, stored 1e+06s and kept the old value."""
    try:
        for value, shown in ((1000000, "1000000s"), (0.00001, "0.00001s")):
            assert _set(anode.url, max_wait=value)["set"] == ["max_wait"]
            got = requests.get(f"{anode.url}/v1/config", timeout=10).json()["settings"]["max_wait"]
            assert got["value"] == shown and got["origin"].startswith("runtime"), got
    finally:
        _reset(anode.url)


def test_the_ais_cluster_set_config_path_and_its_get_batch_prefix(anode):
    url = anode.url
    r = requests.put(f"{url}/v1/cluster/set-config",
                     params={"get_batch.max_soft_errs": "3", "max_batches": "5"}, timeout=10)
    assert r.status_code == 200, r.text
    try:
        s = r.json()["settings"]
        assert (s["max_soft_errs"]["value"], s["max_batches"]["value"]) == ("3", "5")
        bad = requests.put(f"{url}/v1/cluster/set-config", params={"host": "x"}, timeout=10)
        assert bad.status_code == 400 and "needs a restart" in bad.json()["message"]
    finally:
        r = requests.put(f"{url}/v1/cluster/reset-config", timeout=10)
        assert r.status_code == 200, r.text
    assert requests.get(f"{url}/v1/config", timeout=10).json()["settings"][
        "max_batches"]["origin"] == "default"


def test_beyond_max_batches_a_batch_gets_429_and_running_ones_finish(anode):
    url = anode.url
    _set(url, max_batches=2, admit_wait=0)   # refused at once: the old single tier
    try:
        held = [_batch(url, stream=True) for _ in range(2)]
        assert [r.status_code for r in held] == [200, 200]
        for _ in range(6):  # counted across both processes: each refuses
            r = _batch(url)
            assert r.status_code == 429, r.text[:200]
            assert r.headers["Retry-After"] == "1"
            assert "2 batches running already (max_batches 2)" in r.json()["message"]
        for r in held:  # the admitted batches were not starved: whole and right
            _check_archive(r.content)
        r = _batch(url)  # their slots are free again
        assert r.status_code == 200
        _check_archive(r.content)
    finally:
        _reset(url)
    assert "GetBatch refused with 429" in anode.log()


def test_the_memory_budgets_refuse_too(anode):
    url = anode.url
    _set(url, batch_memory="36MiB", admit_wait=0)  # one batch of window 32 MiB + 4 MiB
    try:
        held = _batch(url, stream=True)
        assert held.status_code == 200
        r = _batch(url)
        assert r.status_code == 429
        assert "batch_memory 36 MiB at 36 MiB a batch" in r.json()["message"]
        _check_archive(held.content)
        _set(url, batch_memory="2GiB", min_free_memory="1000000GiB")
        r = _batch(url)
        assert r.status_code == 429 and "min_free_memory" in r.json()["message"]
    finally:
        _reset(url)
    assert _batch(url).status_code == 200


def _locked(path, byte):
    """Whether another process holds a lock on `byte` of `path` (F_GETLK: takes nothing)."""
    fmt = "hhxxxxqqixxxx"   # struct flock on 64-bit Linux
    if not os.path.exists(path):
        return False
    with open(path, "rb") as f:
        got = fcntl.fcntl(f, fcntl.F_GETLK, struct.pack(fmt, fcntl.F_WRLCK, os.SEEK_SET,
                                                        byte, 1, 0))
    return struct.unpack(fmt, got)[0] != fcntl.F_UNLCK


def _metric(url, name):
    text = requests.get(f"{url}/metrics", timeout=10).text
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
               if ln.startswith(name + "{") or ln.startswith(name + " "))


def test_beyond_max_batches_a_batch_waits_for_a_slot_then_runs(anode):
    """The throttle tier: a batch past max_batches waits (up to admit_wait) and runs when a
    running one ends; past max_waiting, or short of disk, it is refused at once."""
    url = anode.url
    _set(url, max_batches=1, max_waiting=1, admit_wait="30s")
    waited_before = _metric(url, "ais_target_getbatch_throttle_ns")
    try:
        held = _batch(url, stream=True)
        assert held.status_code == 200
        result = {}
        waiter = threading.Thread(target=lambda: result.setdefault("r", _batch(url)))
        waiter.start()
        deadline = time.monotonic() + 30
        while not _locked(os.path.join(anode.data_dir, ".sys", "batch-waiting"), 0):
            assert time.monotonic() < deadline and waiter.is_alive()
            time.sleep(0.02)
        r = _batch(url)   # the waiter holds the one waiting place: refused at once
        assert r.status_code == 429 and "1 waiting already" in r.json()["message"], r.text
        assert r.headers["Retry-After"] == "1"
        _check_archive(held.content)   # its slot goes to the waiter
        waiter.join(30)
        assert result["r"].status_code == 200
        _check_archive(result["r"].content)
        assert _metric(url, "ais_target_getbatch_throttle_ns") > waited_before
        _set(url, min_free_disk="1000000GiB")
        r = _batch(url)
        assert r.status_code == 429 and "min_free_disk" in r.json()["message"]
        assert r.headers["Retry-After"] == "5"
    finally:
        _reset(url)
    assert _batch(url).status_code == 200


def _moss_429s(url):
    """The node's count of GetBatch requests refused with a 429 (all workers)."""
    text = requests.get(f"{url}/metrics", timeout=10).text
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
               if ln.startswith("getbatch_http_429_total{") and 'path="moss"' in ln)


def test_the_sdk_retries_a_429_and_gets_its_batch(anode):
    url = anode.url
    _set(url, max_batches=1, admit_wait=0)
    try:
        held = _batch(url, stream=True)
        assert held.status_code == 200
        # the SDK's own retry policy (urllib3 honours Retry-After on 429)
        from aistore import Client
        client = Client(url, timeout=(5, 60))
        result = {}

        def run():
            batch = client.batch(bucket=client.bucket("adm"))
            for i in range(3):
                batch.add(f"o{i}")
            result["items"] = [(info.obj_name, data) for info, data in batch.get()]

        refused = _moss_429s(url)
        t = threading.Thread(target=run)
        t.start()
        until(lambda: _moss_429s(url) > refused, "the SDK's batch was not refused")
        _check_archive(held.content)  # releases the slot
        t.join(30)
        assert not t.is_alive()
        assert result["items"] == [(f"o{i}", _data(i)) for i in range(3)]
    finally:
        _reset(url)


def test_a_storm_of_batches_past_the_budget_429s_no_5xx_bounded_rss(anode):
    url = anode.url
    _set(url, max_batches=3, max_waiting=2)
    statuses, bad, peak = [], [], [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _workers_rss(anode.proc.pid))
            time.sleep(0.05)

    def client():
        for _ in range(4):
            r = _batch(url)
            statuses.append(r.status_code)
            if r.status_code == 200:
                try:
                    _check_archive(r.content)
                except AssertionError as exc:
                    bad.append(exc)
            elif r.status_code == 429:
                time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        base = _workers_rss(anode.proc.pid)
        threads = [threading.Thread(target=client) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        stop.set()
        sampler.join()
        _reset(url)
    assert set(statuses) <= {200, 429}, statuses
    assert statuses.count(429) > 0 and statuses.count(200) > 0
    assert not bad
    # plain objects go out zero-copy: admitted batches add buffers, not their 12 MiB each
    assert peak[0] - base < 3 * (32 << 20), (base, peak[0])
    r = requests.get(f"{url}/metrics", timeout=10).text
    assert any(ln.startswith("getbatch_http_429_total{") and 'path="moss"' in ln
               and float(ln.rsplit(" ", 1)[1]) >= statuses.count(429)
               for ln in r.splitlines())
