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


def _wait(reg, job_id):
    for _ in range(200):
        rec = reg.get(job_id)
        if rec["state"] != "running":
            return rec
        time.sleep(0.02)
    raise AssertionError("job did not finish")


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
