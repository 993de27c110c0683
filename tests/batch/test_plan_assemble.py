"""Planning and assembly without HTTP: fd budget, cleanup on errors, both output paths agree."""
import io
import json
import os
import tarfile

import pytest

from getbatch.batch import plan as plan_mod
from getbatch.batch.assemble import BatchOutput
from getbatch.batch.errors import NotFound, RangeNotSatisfiable
from getbatch.batch.request import parse
from getbatch.store import LocalStore, Storage

from .emitting import emit_to_file


def open_fds():
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def store(tmp_path):
    st = LocalStore(tmp_path / "data", fsync=False)
    st.create_bucket("b")
    for i in range(50):
        st.put("b", f"o{i}", io.BytesIO(bytes([i]) * (i * 37)), i * 37)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("m")
        ti.size = 3
        tf.addfile(ti, io.BytesIO(b"mmm"))
    st.put("b", "s.tar", io.BytesIO(buf.getvalue()), len(buf.getvalue()))
    return st


def request(entries, **kw):
    return parse(json.dumps({"in": entries, **kw}).encode(), "b")


def body_via_emit(out, tmp_path):
    emit_to_file(out, tmp_path / "emitted")
    return (tmp_path / "emitted").read_bytes()


@pytest.mark.parametrize("budget", [0, 7, 10_000])
def test_fd_budget_bounds_open_files_and_is_returned(store, tmp_path, monkeypatch, budget):
    monkeypatch.setattr(store.fds, "free", budget)
    before = open_fds()
    entries = [{"objname": f"o{i}"} for i in range(50)] + [{"objname": "s.tar", "archpath": "m"}]
    p = plan_mod.build(request(entries, strm=True), Storage({'ais': store}))
    held = open_fds() - before
    assert held <= min(budget, 50) + 1          # + the shard
    out = BatchOutput(p, "tar", multipart=False)
    a = body_via_emit(out, tmp_path)
    out.close()
    assert open_fds() == before and store.fds.free == budget
    p2 = plan_mod.build(request(entries, strm=True), Storage({'ais': store}))
    out2 = BatchOutput(p2, "tar", multipart=False)
    b = b"".join(out2)
    out2.close()
    assert a == b and len(a) == out.content_length
    with tarfile.open(fileobj=io.BytesIO(a)) as tf:
        got = [(m.name, tf.extractfile(m).read()) for m in tf.getmembers()]
    assert got[:50] == [(f"b/o{i}", bytes([i]) * (i * 37)) for i in range(50)]
    assert got[50] == ("b/s.tar/m", b"mmm")
    assert open_fds() == before and store.fds.free == budget


@pytest.mark.parametrize("bad,exc", [({"objname": "missing"}, NotFound),
                                     ({"objname": "o5", "start": 1000, "length": 1}, RangeNotSatisfiable)])
def test_failed_planning_closes_what_it_opened(store, monkeypatch, bad, exc):
    monkeypatch.setattr(store.fds, "free", 100)
    before = open_fds()
    entries = [{"objname": f"o{i}"} for i in range(10)] + [{"objname": "s.tar", "archpath": "m"}, bad]
    with pytest.raises(exc):
        plan_mod.build(request(entries, coer=False), Storage({'ais': store}))
    assert open_fds() == before and store.fds.free == 100


@pytest.mark.parametrize("fmt", ["tar", "tgz", "zip"])
def test_source_vanishing_after_planning_breaks_the_stream_not_the_archive_end(store, tmp_path,
                                                                            monkeypatch, fmt):
    """A failure after the status line must never end as a valid-looking archive."""
    from getbatch.archive import EmitError

    monkeypatch.setattr(store.fds, "free", 0)   # paths, not fds: the file can vanish
    entries = [{"objname": "o1"}, {"objname": "o2"}, {"objname": "o3"}]
    p = plan_mod.build(request(entries, strm=True), Storage({'ais': store}))
    os.unlink(os.path.join(store.data_dir, "ais", "b", "o2"))
    out = BatchOutput(p, fmt, multipart=False)
    chunks = []
    with pytest.raises(OSError):
        for c in out:
            chunks.append(c)
    assert not b"".join(chunks).endswith(bytes(1024))
    if fmt == "tar":
        with pytest.raises(EmitError) as ei:
            body_via_emit(out, tmp_path)
        assert ei.value.index >= 1 and "o2" in str(ei.value)
    out.close()


def test_identity_of_a_source_vanished_after_planning_is_unknown(store, monkeypatch):
    """What names an item's version for failover (plan.identity): nothing proves the version
    of an object gone since it was planned (its send fails later), which is not an error of
    the plan frame naming it; a file inside a shard is named by its shard's checksum."""
    monkeypatch.setattr(store.fds, "free", 0)   # paths, not fds: the file can vanish
    p = plan_mod.build(request([{"objname": "o1"}, {"objname": "s.tar", "archpath": "m"}]),
                       Storage({'ais': store}))
    try:
        member = plan_mod.identity(p.items[1])
        assert member.size == 3 and member.cksum_value == store.stat("b", "s.tar").cksum_value
        os.unlink(os.path.join(store.data_dir, "ais", "b", "o1"))
        assert plan_mod.identity(p.items[0]) is None
    finally:
        p.close()


def test_corrupt_tar_shard_is_a_request_error(store):
    from getbatch.batch.errors import BadRequest

    good = io.BytesIO()
    with tarfile.open(fileobj=good, mode="w") as tf:
        ti = tarfile.TarInfo("x")
        ti.size = 1
        tf.addfile(ti, io.BytesIO(b"1"))
    bad = bytearray(good.getvalue())
    bad[0:20] = b"garbage-garbage-garb"           # breaks the header checksum
    store.put("b", "bad.tar", io.BytesIO(bytes(bad)), len(bad))
    with pytest.raises(BadRequest) as ei:
        plan_mod.build(request([{"objname": "bad.tar", "archpath": "x"}], coer=True), Storage({'ais': store}))
    assert "bad.tar" in ei.value.message
