"""Warm-up (batch/warmup.py): the look-ahead asks for the next items' bytes, stays within its
bounds, and a batch sent with it is byte-identical to one sent without."""
import io
import json
import tarfile
import time

import pytest

from getbatch.batch import plan as plan_mod
from getbatch.batch import warmup
from getbatch.batch.assemble import BatchOutput
from getbatch.batch.request import parse
from getbatch.store import LocalStore, Storage

from .emitting import emit_to_file


@pytest.fixture
def storage(tmp_path):
    st = LocalStore(tmp_path / "data", fsync=False)
    st.create_bucket("b")
    for i in range(300):
        size = (i * 7919) % (300 << 10)
        st.put("b", f"o{i}", io.BytesIO(bytes([i % 251]) * size), size)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for j in range(20):
            ti = tarfile.TarInfo(f"m{j}")
            ti.size = 5000 + j
            tf.addfile(ti, io.BytesIO(bytes([j]) * ti.size))
    st.put("b", "s.tar", io.BytesIO(buf.getvalue()), len(buf.getvalue()))
    return Storage({"ais": st})


def _entries():
    out = []
    for i in range(300):
        out.append({"objname": f"o{i}"})
        if i % 15 == 0:
            out.append({"objname": "s.tar", "archpath": f"m{i // 15}"})
    return out


def _plan(storage):
    req = parse(json.dumps({"in": _entries(), "strm": True}).encode(), "b")
    return plan_mod.build(req, storage)


def _wait_idle(pool):
    deadline = time.monotonic() + 30
    while pool.busy and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pool.busy == 0


@pytest.mark.parametrize("workers", [1, 3])
def test_a_batch_with_warmup_is_byte_identical(storage, tmp_path, workers):
    pool = warmup.WarmPool()
    bodies = []
    for w in (0, workers):
        p = _plan(storage)
        out = BatchOutput(p, "tar", multipart=False, warmup=w, warm_pool=pool)
        emit_to_file(out, tmp_path / f"out{w}")
        out.close()
        bodies.append((tmp_path / f"out{w}").read_bytes())
    assert bodies[0] == bodies[1]
    with tarfile.open(fileobj=io.BytesIO(bodies[1])) as tf:
        assert len(tf.getmembers()) == len(_entries())
    _wait_idle(pool)


def test_the_lookahead_asks_for_the_next_stretch_within_its_bounds(storage, monkeypatch):
    asked = []
    monkeypatch.setattr(warmup, "_advise", lambda ranges: asked.append(ranges))
    pool = warmup.WarmPool()
    p = _plan(storage)
    try:
        ahead = warmup.Lookahead(p.items, 2, pool)
        ahead.advance(0)
        _wait_idle(pool)
        assert len(asked) == 1
        first = asked[0]
        assert sum(n for _, _, n in first) <= warmup.AHEAD_BYTES
        assert ahead.warmed <= warmup.AHEAD_ITEMS
        # the ranges are the items' own: fd, offset, and the size (cut at the budget)
        its = [it for it in p.items[:ahead.warmed] if it.src is not None and it.size]
        assert [(fd, off) for fd, off, _ in first] == [(it.src.fileno(), it.offset) for it in its]
        assert all(n == min(it.size, warmup.HEAD_BYTES) for (_, _, n), it in zip(first[:-1], its))
        w = ahead.warmed
        ahead.advance(1)       # the sending moved on: the next stretch starts where the last ended
        _wait_idle(pool)
        nxt = next(it for it in p.items[w:] if it.src is not None and it.size)
        assert asked[1][0][:2] == (nxt.src.fileno(), nxt.offset)
        assert ahead.warmed > w
        ahead.advance(len(p.items))   # past the end: nothing more to ask
        _wait_idle(pool)
        assert len(asked) == 2
    finally:
        p.close()


def test_a_busy_pool_drops_the_stretch_and_the_batch_goes_on(storage):
    """Best effort: with every thread busy a stretch is not queued, and is asked for again
    at the next step."""
    release = __import__("threading").Event()
    pool = warmup.WarmPool()
    assert pool.offer(release.wait, 1)
    p = _plan(storage)
    try:
        ahead = warmup.Lookahead(p.items, 1, pool)
        ahead.advance(0)
        assert ahead.warmed == 0
        release.set()
        _wait_idle(pool)
        ahead.advance(0)
        assert ahead.warmed > 0
        _wait_idle(pool)
    finally:
        release.set()
        p.close()
