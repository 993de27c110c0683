"""Shard index: in-process LRU, persistence in index_dir, reuse and rebuild on change."""
import os
from pathlib import Path

import pytest

from getbatch.archive import index, open_shard
from tarhelp import make_tar, write_shard


@pytest.fixture
def stats():
    index.clear_cache()
    before = dict(index.STATS)
    return lambda: {k: index.STATS[k] - before[k] for k in before}


def shard_bytes(n=50, tag=b""):
    return make_tar([(f"m/{i:03d}.txt", tag + b"%d" % i * (i + 1)) for i in range(n)])


def test_no_index_dir_writes_nothing(tmp_path, stats):
    path = write_shard(tmp_path, "s", shard_bytes())
    before = sorted(os.listdir(tmp_path))
    with open_shard(path) as sh:
        sh.read("m/001.txt")
    assert sorted(os.listdir(tmp_path)) == before
    assert stats() == {"hits": 0, "loads": 0, "builds": 1, "saves": 0}


def test_lru_reuses_index_in_process(tmp_path, stats):
    path = write_shard(tmp_path, "s", shard_bytes())
    for _ in range(3):
        with open_shard(path) as sh:
            assert sh.read("m/002.txt") == b"222"
    assert stats()["builds"] == 1 and stats()["hits"] == 2


@pytest.mark.parametrize("fmt", ["tar", "tgz", "tar.lz4"])
def test_persisted_and_reloaded(tmp_path, stats, fmt):
    idx_dir = tmp_path / "idx"
    path = write_shard(tmp_path, "s", shard_bytes(), fmt)
    with open_shard(path, index_dir=idx_dir) as sh:
        first = sh.members()
    files = os.listdir(idx_dir)
    assert len(files) == 1 and files[0].endswith(".gbidx")
    index.clear_cache()  # as in a new process
    with open_shard(path, index_dir=idx_dir) as sh:
        assert sh.members() == first
        assert sh.read("m/007.txt") == b"7" * 8
        if fmt != "tar":
            assert sh.passes == 1  # the index came from disk: only the read pass
    assert stats() == {"hits": 0, "loads": 1, "builds": 1, "saves": 1}


def test_rebuilt_when_mtime_or_content_changes(tmp_path, stats):
    idx_dir = tmp_path / "idx"
    path = write_shard(tmp_path, "s", shard_bytes())
    with open_shard(path, index_dir=idx_dir) as sh:
        assert sh.read("m/003.txt") == b"3333"
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    index.clear_cache()
    with open_shard(path, index_dir=idx_dir) as sh:
        sh.read("m/003.txt")
    assert stats()["builds"] == 2 and stats()["loads"] == 0
    # rewritten with other content (different size): the new members are seen
    path.write_bytes(shard_bytes(60, tag=b"new"))
    with open_shard(path, index_dir=idx_dir) as sh:
        assert sh.read("m/055.txt").startswith(b"new")
    assert len(os.listdir(idx_dir)) == 1  # same shard path: the index file was replaced
    assert stats()["builds"] == 3


def test_corrupt_or_foreign_index_file_is_a_miss(tmp_path, stats):
    idx_dir = tmp_path / "idx"
    a = write_shard(tmp_path, "a", shard_bytes())
    b = write_shard(tmp_path, "b", shard_bytes(10))
    open_shard(a, index_dir=idx_dir).close()
    open_shard(b, index_dir=idx_dir).close()
    fa, fb = (Path(index._index_file(idx_dir, p)) for p in (a, b))
    fb.write_bytes(fa.read_bytes())  # b's index file now describes a
    fa.write_bytes(b"\x93garbage")
    index.clear_cache()
    with open_shard(a, index_dir=idx_dir) as sh:
        assert len(sh.members()) == 50
    with open_shard(b, index_dir=idx_dir) as sh:
        assert len(sh.members()) == 10
    assert stats()["loads"] == 0 and stats()["builds"] == 4


def test_index_dir_unwritable_is_not_an_error(tmp_path, stats):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    path = write_shard(tmp_path, "s", shard_bytes())
    with open_shard(path, index_dir=blocker / "sub") as sh:
        assert sh.read("m/001.txt") == b"11"
    assert stats()["saves"] == 0


def test_atomic_write_leaves_no_temp_files(tmp_path):
    idx_dir = tmp_path / "idx"
    for i in range(5):
        open_shard(write_shard(tmp_path, f"s{i}", shard_bytes(5)), index_dir=idx_dir).close()
    assert all(not f.startswith(".tmp") for f in os.listdir(idx_dir))
    assert len(os.listdir(idx_dir)) == 5


def test_undecodable_names_persist(tmp_path, stats):
    idx_dir = tmp_path / "idx"
    name = "bad\udcff/name"
    path = write_shard(tmp_path, "s", make_tar([(name, b"v"), ("ok", b"w")]))
    open_shard(path, index_dir=idx_dir).close()
    index.clear_cache()
    with open_shard(path, index_dir=idx_dir) as sh:
        assert sh.read(name) == b"v"
        assert [m.name for m in sh.members()] == [name, "ok"]
    assert stats()["loads"] == 1


def test_symlinked_path_shares_index(tmp_path, stats):
    idx_dir = tmp_path / "idx"
    path = write_shard(tmp_path, "s", shard_bytes())
    link = tmp_path / "link.tar"
    link.symlink_to(path)
    open_shard(path, index_dir=idx_dir).close()
    index.clear_cache()
    with open_shard(link, index_dir=idx_dir) as sh:
        assert sh.read("m/000.txt") == b"0"
    assert stats()["loads"] == 1 and len(os.listdir(idx_dir)) == 1


def test_lru_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(index, "CACHE_SIZE", 3)
    paths = [write_shard(tmp_path, f"s{i}", shard_bytes(3)) for i in range(6)]
    for p in paths:
        open_shard(p).close()
    assert len(index._cache) == 3


def test_first_regular_file_wins_in_index(tmp_path):
    data = make_tar([("d", b"one"), ("d", b"two")])
    idx_dir = tmp_path / "idx"
    path = write_shard(tmp_path, "dup", data)
    open_shard(path, index_dir=idx_dir).close()
    index.clear_cache()
    with open_shard(path, index_dir=idx_dir) as sh:
        assert sh.read("d") == b"one"
