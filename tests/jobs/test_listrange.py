"""Multi-object jobs run over a real LocalStore: selections, error rules, prefetch's `coer`.

Prefetch and evict need a remote backend; `Cached` plays one over the local store (its
"remote" objects are the local ones), so the job rules are checked without a network."""
import io
import time

import pytest

from getbatch.jobs import Registry
from getbatch.jobs.listrange import (DELETE, EVICT, PREFETCH, Selection, SelectionError,
                                     start_checked)
from getbatch.store import LocalStore, NotRemote


class Cached(LocalStore):
    provider = "aws"

    def prefetch(self, bucket, name):
        return self.stat(bucket, name).size

    def evict(self, bucket, name):
        return self.stat(bucket, name).size


def _wait(reg, job_id, timeout=30.0):
    deadline = time.monotonic() + timeout
    while (rec := reg.get(job_id))["state"] == "running":
        assert time.monotonic() < deadline, "job did not finish"
        time.sleep(0.02)
    return rec


@pytest.fixture
def setup(tmp_path):
    store = Cached(str(tmp_path / "data"), fsync=False)
    store.create_bucket("b")
    for name in ("a", "bb", "c/d"):
        store.put("b", name, io.BytesIO(name.encode() * 10))
    return store, Registry(str(tmp_path / "jobs"))


def test_prefetch_stops_at_the_first_error_unless_coer(setup):
    store, reg = setup
    rec = _wait(reg, start_checked(reg, PREFETCH, store, "b", {"objnames": ["a", "x", "bb"]}, 10))
    assert rec["state"] == "failed" and rec["objects"] == 1 and rec["errors"] == 1
    assert "b/x does not exist" in rec["error"]
    rec = _wait(reg, start_checked(reg, PREFETCH, store, "b",
                                   {"objnames": ["a", "x", "bb"], "coer": True}, 10))
    assert rec["objects"] == 2 and rec["bytes"] == 30 and rec["errors"] == 1


def test_evict_by_prefix_counts_bytes(setup):
    store, reg = setup
    rec = _wait(reg, start_checked(reg, EVICT, store, "b", {"template": "c/"}, 10))
    assert (rec["state"], rec["objects"], rec["bytes"]) == ("finished", 1, 30)


def test_local_buckets_refuse_prefetch_and_evict(tmp_path):
    store = LocalStore(str(tmp_path / "data"), fsync=False)
    store.create_bucket("b")
    reg = Registry(str(tmp_path / "jobs"))
    for kind in (PREFETCH, EVICT):
        with pytest.raises(NotRemote):
            start_checked(reg, kind, store, "b", {"objnames": ["a"]}, 10)
    assert reg.list() == []
    rec = _wait(reg, start_checked(reg, DELETE, store, "b", {"template": ""}, 10))
    assert rec["state"] == "finished" and rec["objects"] == 0


def test_selection_limits():
    with pytest.raises(SelectionError, match="max_entries"):
        Selection({"objnames": ["a", "b", "c"]}, 2)
    assert Selection({"template": "x-{1..5}"}, 2).total() == 5
    assert Selection({"template": "x-"}, 2).total() is None


def test_a_job_keeps_to_its_rate(setup):
    """100 names at 200 a second take half a second at least (the first second's credit is
    not banked ahead: a job starts at its rate)."""
    store, reg = setup
    t0 = time.monotonic()
    rec = _wait(reg, start_checked(reg, DELETE, store, "b", {"template": "none-{0..99}"}, 10,
                                   rate=200))
    assert rec["state"] == "finished" and time.monotonic() - t0 >= 0.45


def test_a_throttled_job_is_aborted_while_it_waits(setup):
    store, reg = setup
    job_id = start_checked(reg, DELETE, store, "b", {"template": "none-{0..99}"}, 10, rate=2)
    time.sleep(0.3)
    reg.abort(job_id)
    t0 = time.monotonic()
    rec = _wait(reg, job_id)
    # at its rate the job would take 50 s: an abort that waited for it would not end before
    assert rec["state"] == "aborted" and time.monotonic() - t0 < 25


def test_templates_are_capped():
    with pytest.raises(SelectionError, match="over the limit of 1000 .setting max_template"):
        Selection({"template": "x-{0..1000}"}, 10, max_template=1000)
    assert Selection({"template": "x-{0..999}"}, 10, max_template=1000).total() == 1000


def test_jobs_per_bucket_are_capped(tmp_path):
    from getbatch.jobs import TooManyJobs
    reg = Registry(str(tmp_path / "jobs"), max_per_bucket=2)
    for _ in range(2):
        reg.start(DELETE, "b", "ais")
    with pytest.raises(TooManyJobs, match="ais://b"):
        reg.start(DELETE, "b", "ais")
    reg.start(DELETE, "b", "aws")   # another bucket (same name, another provider)
    reg.start(DELETE, "c", "ais")
