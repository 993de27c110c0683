"""Version stamps in the local store of a cluster node: newest stamp wins for copies and
deletes, tombstones keep a deleted name deleted, and the clock orders writes."""
import io
import os

import pytest

from getbatch.store import LocalStore, ObjectNotFound
from getbatch.store.stamps import Clock, clock_of, wall_ms


@pytest.fixture
def store(tmp_path):
    s = LocalStore(tmp_path / "data")
    s.clock = Clock("n1")
    s.create_bucket("b")
    return s


def _read(store, name):
    src, attrs = store.open("b", name)
    with src:
        return src.pread(attrs.size, 0), attrs.stamp


def test_clock_never_repeats_and_jumps_past_what_it_sees():
    c = Clock("n1")
    stamps = [c.now() for _ in range(1000)]
    assert stamps == sorted(stamps) and len(set(stamps)) == 1000
    far = f"{clock_of(stamps[-1]) + (10 << 16):016x}.n2"
    c.observe(far)
    assert c.now() > far
    assert c.now(after=f"{clock_of(far) + 5:016x}.n9") > far
    assert abs(wall_ms(stamps[0]) - wall_ms(c.now())) < 60_000
    assert "" < stamps[0]  # an unstamped copy is older than any stamped one


def test_a_write_here_is_newer_than_what_it_replaces(store):
    a = store.put("b", "x", io.BytesIO(b"one"))
    later = f"{clock_of(a.stamp) + (1 << 30):016x}.n2"   # a peer's clock far ahead
    assert store.put("b", "x", io.BytesIO(b"two"), stamp=later).stamp == later
    c = store.put("b", "x", io.BytesIO(b"three"))
    assert c.stamp > later and c.stamp.endswith(".n1")
    assert _read(store, "x") == (b"three", c.stamp)


def test_a_copy_replaces_only_an_older_version(store):
    new = store.put("b", "x", io.BytesIO(b"new"))
    older = f"{clock_of(new.stamp) - 1:016x}.n2"
    assert store.put("b", "x", io.BytesIO(b"old"), stamp=older) is None
    assert store.put("b", "x", io.BytesIO(b"same"), stamp=new.stamp) is None
    assert _read(store, "x") == (b"new", new.stamp)
    assert store.list_objects("b")[0][0].name == "x"
    assert os.listdir(store.data_dir + "/.sys/tmp") == []   # the refused copies' temp files


def test_deletes_leave_tombstones_that_older_copies_cannot_undo(store):
    v = store.put("b", "d/x", io.BytesIO(b"v"))
    stamp, existed = store.delete("b", "d/x")
    assert existed and stamp > v.stamp
    with pytest.raises(ObjectNotFound):
        store.stat("b", "d/x")
    assert store.tombs.get("b", "d/x") == stamp
    assert store.current_stamp("b", "d/x") == stamp
    assert store.put("b", "d/x", io.BytesIO(b"v"), stamp=v.stamp) is None   # a late replica
    with pytest.raises(ObjectNotFound):
        store.stat("b", "d/x")
    assert store.list_objects("b") == ([], "")
    # a newer write brings the name back and drops the tombstone
    back = store.put("b", "d/x", io.BytesIO(b"again"))
    assert back.stamp > stamp and store.tombs.get("b", "d/x") == ""
    # an older delete does not remove a newer object; with keep a tombstone is left anyway
    assert store.delete("b", "d/x", stamp=stamp) == (stamp, True)
    assert _read(store, "d/x")[0] == b"again"
    assert store.delete("b", "nothing", keep=True)[1] is False
    assert store.tombs.items("b") == [("nothing", store.tombs.get("b", "nothing"))]
    with pytest.raises(ObjectNotFound):
        store.delete("b", "nothing-either")
    assert store.current_stamp("b", "nothing-either") is None


def test_drop_copy_only_of_the_version_named(store):
    a = store.put("b", "x", io.BytesIO(b"a"))
    assert not store.drop_copy("b", "x", "0000000000000001.n9")
    assert store.drop_copy("b", "x", a.stamp)
    assert store.current_stamp("b", "x") is None   # no tombstone: a move, not a delete


def test_a_single_node_stamps_nothing(tmp_path):
    s = LocalStore(tmp_path / "data")
    s.create_bucket("b")
    assert s.put("b", "x", io.BytesIO(b"x")).stamp == ""
    assert s.delete("b", "x") is None
    assert s.tombs.items("b") == []
