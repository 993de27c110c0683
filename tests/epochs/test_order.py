"""Epoch plans without a server: dataset building from shard listings, the epoch order, and
how steps split it across ranks."""
import io

import pytest
from hypothesis import given, settings, strategies as st

from getbatch.batch.errors import BadRequest, NotFound, RangeNotSatisfiable
from getbatch.epochs import dataset as ds_mod
from getbatch.epochs.order import permutation, step_count, step_range
from getbatch.epochs.spec import parse_spec
from getbatch.store import LocalStore, Storage
from tests.archive.tarhelp import make_tar


def _spec(**kw):
    doc = {"bucket": "b", "shards": {"prefix": "s-"}, "batch_size": 4}
    doc.update(kw)
    return parse_spec(doc)


@pytest.fixture
def storage(tmp_path):
    st = LocalStore(tmp_path / "data", fsync=False)
    st.create_bucket("b")
    for s in range(5):
        members = []
        for k in range(6):
            members += [(f"{s}-{k}.jpg", b"j" * (k + 1)), (f"{s}-{k}.cls", b"%d" % k)]
        data = make_tar(members)
        st.put("b", f"s-{s}.tar", io.BytesIO(data), len(data))
    st.put("b", "other.bin", io.BytesIO(b"x"), 1)
    return Storage({"ais": st})


def _samples(ds):
    return [[ds.member_name(m) for m in ds.sample_members(s)] for s in range(ds.samples)]


def test_dataset_from_listing_members_and_samples(storage):
    ds = ds_mod.build(_spec(), storage)
    assert ds.shards == [f"s-{s}.tar" for s in range(5)]
    assert ds.samples == ds.members == 60
    grouped = ds_mod.build(_spec(group="sample"), storage)
    assert grouped.samples == 30 and grouped.members == 60
    assert _samples(grouped)[0] == ["0-0.cls", "0-0.jpg"]
    jpg = ds_mod.build(_spec(members={"ext": [".jpg"]}), storage)
    assert jpg.samples == 30 and all(n[0].endswith(".jpg") for n in _samples(jpg))
    # names and template select the same shards; the persisted form round-trips
    named = ds_mod.build(_spec(shards={"names": ["s-3.tar", "s-1.tar"]}), storage)
    assert named.shards == ["s-3.tar", "s-1.tar"]
    tmpl = ds_mod.build(_spec(shards={"template": "s-{0..9}.tar"}), storage)
    assert tmpl.shards == ds.shards and tmpl.digest == ds.digest
    back = ds_mod.Dataset.from_bytes(ds.to_bytes())
    assert back.digest == ds.digest and _samples(back) == _samples(ds)


def test_dataset_errors(storage):
    with pytest.raises(NotFound, match="s-7.tar"):
        ds_mod.build(_spec(shards={"names": ["s-7.tar"]}), storage)
    with pytest.raises(NotFound, match="no samples"):
        ds_mod.build(_spec(members={"regex": r"\.wav$"}), storage)
    for bad in ({"shards": {"glob": "*"}}, {"batch_size": 0}, {"group": "pairs"},
                {"shuffle": {"mode": "bogus"}}, {"members": {"regex": "("}}, {"seed": -1},
                {"extra": 1}, {"shards": {"template": "plain"}}):
        with pytest.raises(BadRequest):
            _spec(**bad)


@pytest.mark.parametrize("mode", ["full", "shard", "none"])
def test_every_sample_once_per_epoch_for_any_world_size(storage, mode):
    ds = ds_mod.build(_spec(), storage)
    perm = permutation(ds, mode, 7, seed=3, epoch=1)
    assert sorted(perm) == list(range(ds.samples))
    assert perm == permutation(ds, mode, 7, seed=3, epoch=1)
    if mode != "none":
        assert perm != permutation(ds, mode, 7, seed=3, epoch=2)
        assert perm != permutation(ds, mode, 7, seed=4, epoch=1)
    for world, batch, drop in ((1, 4, False), (3, 4, False), (7, 4, False), (4, 5, True)):
        got = []
        steps = step_count(ds.samples, batch, world, drop)
        for rank in range(world):
            for step in range(steps + 1):
                try:
                    a, b = step_range(ds.samples, batch, world, rank, step, drop)
                except RangeNotSatisfiable:
                    assert step >= steps - 1
                    continue
                assert b - a <= batch
                got += perm[a:b]
        if drop:
            assert len(got) == len(set(got)) == (ds.samples // (batch * world)) * batch * world
        else:
            assert sorted(got) == list(range(ds.samples))


def test_shard_shuffle_keeps_locality(storage):
    ds = ds_mod.build(_spec(), storage)
    shards_of = lambda perm, a, b: {ds.shard_of[ds.starts[s]] for s in perm[a:b]}  # noqa: E731
    local = permutation(ds, "shard", 12, seed=1, epoch=0)
    # a window of 12 samples spans at most 3 shards of 12 samples each (2 when aligned)
    assert all(len(shards_of(local, a, a + 12)) <= 2 for a in range(0, 60, 12))


def test_elastic_resume_keeps_the_global_order():
    # 4 ranks ran 2 steps of 3; the job resumes on 3 ranks at offset 24
    n, batch = 50, 3
    before = [step_range(n, batch, 4, r, k, False) for k in range(2) for r in range(4)]
    after = []
    for k in range(step_count(n, batch, 3, False, offset=24)):
        for r in range(3):
            try:
                after.append(step_range(n, batch, 3, r, k, False, offset=24))
            except RangeNotSatisfiable:
                pass
    positions = [p for a, b in before + after for p in range(a, b)]
    assert sorted(positions) == list(range(n))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 500), st.integers(1, 40), st.integers(1, 9), st.booleans(),
       st.integers(0, 600))
def test_steps_cover_the_order_once(n, batch, world, drop, offset):
    """For any sizes: the steps of all ranks hold each position from `offset` on once (or,
    with drop_last, exactly the full global steps), none past the end."""
    steps = step_count(n, batch, world, drop, offset)
    got = []
    for rank in range(world):
        for k in range(steps + 1):
            try:
                a, b = step_range(n, batch, world, rank, k, drop, offset)
            except RangeNotSatisfiable:
                assert k >= steps - 1
                continue
            assert k < steps and 0 < b - a <= batch
            got += range(a, b)
    left = max(0, n - offset)
    want = range(offset, offset + (left // (batch * world)) * batch * world if drop else n)
    assert sorted(got) == list(want)
