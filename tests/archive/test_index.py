"""Shard index: in-process LRU, persistence in index_dir, keyed by the identity of the shard
version being read, verified before use and rebuilt on any doubt."""
import os
import threading
from pathlib import Path

import msgpack
import pytest

from getbatch.archive import index, index_state, memory, open_shard
from getbatch.archive.shardfile import identify
from fuzzcheck import bounded
from tarhelp import compress, make_tar, write_shard


@pytest.fixture
def stats():
    memory.DEFAULT.clear()
    before = dict(memory.DEFAULT.stats)
    return lambda: {k: memory.DEFAULT.stats[k] - before[k] for k in before}


def counts(hits=0, loads=0, builds=0, saves=0, rejects=0):
    return {"hits": hits, "loads": loads, "builds": builds, "saves": saves, "rejects": rejects}


def shard_bytes(n=50, tag=b""):
    return make_tar([(f"m/{i:03d}.txt", tag + b"%d" % i * (i + 1)) for i in range(n)])


def index_file(idx_dir, path):
    fd = os.open(path, os.O_RDONLY)
    try:
        return Path(index._index_file(idx_dir, fd))
    finally:
        os.close(fd)


def identity_of(path, version=""):
    fd = os.open(path, os.O_RDONLY)
    try:
        return identify(fd, str(path), version)
    finally:
        os.close(fd)


def test_no_index_dir_writes_nothing(tmp_path, stats):
    path = write_shard(tmp_path, "s", shard_bytes())
    before = sorted(os.listdir(tmp_path))
    with open_shard(path) as sh:
        sh.read("m/001.txt")
    assert sorted(os.listdir(tmp_path)) == before
    assert stats() == counts(builds=1)


def test_index_state_without_index_dir_is_none(tmp_path):
    path = write_shard(tmp_path, "s", shard_bytes())
    fd = os.open(path, os.O_RDONLY)
    try:
        assert index_state(fd, name="s.tar") == ("none", 0)
        with open_shard(os.dup(fd), name="s.tar", index_dir=str(tmp_path / "idx")):
            pass
        assert index_state(fd, name="s.tar", index_dir=str(tmp_path / "idx")) == ("fresh", 50)
    finally:
        os.close(fd)


def test_lru_reuses_index_in_process(tmp_path, stats):
    path = write_shard(tmp_path, "s", shard_bytes())
    for _ in range(3):
        with open_shard(path) as sh:
            assert sh.read("m/002.txt") == b"222"
    assert stats() == counts(builds=1, hits=2)


@pytest.mark.parametrize("fmt", ["tar", "tgz", "tar.lz4"])
def test_persisted_and_reloaded(tmp_path, stats, fmt):
    idx_dir = tmp_path / "idx"
    path = write_shard(tmp_path, "s", shard_bytes(), fmt)
    with open_shard(path, index_dir=idx_dir) as sh:
        first = sh.members()
    files = os.listdir(idx_dir)
    assert len(files) == 1 and files[0].endswith(".gbidx")
    memory.DEFAULT.clear()  # as in a new process
    with open_shard(path, index_dir=idx_dir) as sh:
        assert sh.members() == first
        assert sh.read("m/007.txt") == b"7" * 8
        if fmt != "tar":
            assert sh.passes == 1  # the index came from disk: only the read pass
    assert stats() == counts(loads=1, builds=1, saves=1)


def test_rebuilt_when_mtime_or_content_changes(tmp_path, stats):
    idx_dir = tmp_path / "idx"
    path = write_shard(tmp_path, "s", shard_bytes())
    with open_shard(path, index_dir=idx_dir) as sh:
        assert sh.read("m/003.txt") == b"3333"
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    memory.DEFAULT.clear()
    with open_shard(path, index_dir=idx_dir) as sh:
        sh.read("m/003.txt")
    assert stats()["builds"] == 2 and stats()["loads"] == 0
    # rewritten with other content (different size): the new members are seen
    path.write_bytes(shard_bytes(60, tag=b"new"))
    with open_shard(path, index_dir=idx_dir) as sh:
        assert sh.read("m/055.txt").startswith(b"new")
    assert len(os.listdir(idx_dir)) == 1  # same shard path: the index file was replaced
    assert stats()["builds"] == 3


def layouts(n=30):
    """Two shards of exactly the same size whose members lie at different offsets: the
    second holds the same names in reverse order with other contents."""
    names = [f"m/{i:03d}.bin" for i in range(n)]
    old = make_tar([(name, b"old%03d" % i * (i + 1)) for i, name in enumerate(names)])
    new = make_tar([(name, b"new%03d" % i * (i + 1)) for i, name in reversed(list(enumerate(names)))])
    assert len(old) == len(new) and old != new
    return names, old, new


def replace_keeping_times(path, data, tmp_path):
    """Publish `data` at `path` by rename (as a PUT does), with the old file's size and mtime."""
    st = os.stat(path)
    tmp = tmp_path / "upload.tmp"
    tmp.write_bytes(data)
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp, path)


@pytest.mark.parametrize("persisted", [False, True])
@pytest.mark.parametrize("fmt", ["tar", "tgz", "zip"])
def test_same_size_same_mtime_reupload_is_a_new_version(tmp_path, stats, persisted, fmt):
    names, old, new = layouts()
    idx_dir = tmp_path / "idx"
    if fmt == "zip":
        old, new = zipped(old), zipped(new)
        path = tmp_path / "s.zip"
        path.write_bytes(old)
    else:
        path = write_shard(tmp_path, "s", old, fmt)
        old, new = (old, new) if fmt == "tar" else (compress(old, fmt), compress(new, fmt))
    with open_shard(path, index_dir=idx_dir) as sh:
        assert sh.read(names[5]) == b"old005" * 6
    replace_keeping_times(path, new, tmp_path)
    if persisted:
        memory.DEFAULT.clear()
    with open_shard(path, index_dir=idx_dir) as sh:
        assert sh.read_many(names) == [b"new%03d" % i * (i + 1) for i in range(len(names))]


def zipped(tar_bytes):
    """A stored ZIP of the TAR's members, in the TAR's order (so offsets follow the layout)."""
    import io
    import tarfile
    import zipfile
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as t, zipfile.ZipFile(out, "w") as z:
        for m in t.getmembers():
            zi = zipfile.ZipInfo(m.name, (2020, 1, 1, 0, 0, 0))
            z.writestr(zi, t.extractfile(m).read())
    return out.getvalue()


def test_in_place_rewrite_with_same_size_and_mtime(tmp_path, stats):
    """Same inode, size and mtime (as after inode reuse with coarse timestamps): the ctime in
    the identity still tells the versions apart."""
    names, old, new = layouts()
    idx_dir = tmp_path / "idx"
    path = write_shard(tmp_path, "s", old)
    open_shard(path, index_dir=idx_dir).close()
    st = os.stat(path)
    path.write_bytes(new)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_ino == st.st_ino
    for _ in range(2):
        with open_shard(path, index_dir=idx_dir) as sh:
            assert sh.read(names[0]) == b"new000"
        memory.DEFAULT.clear()


def test_version_string_is_part_of_the_identity(tmp_path, stats):
    path = write_shard(tmp_path, "s", shard_bytes())
    for version in ("1", "2", "1"):
        open_shard(path, version=version).close()
    assert stats() == counts(builds=2, hits=1)
    assert identity_of(path, "1") != identity_of(path, "2")


def test_reupload_while_reading_never_mixes_versions(tmp_path):
    """Readers open the shard and read all members while a writer keeps publishing same-size
    versions with the same mtime by rename: every read sees exactly one version."""
    names, old, new = layouts(40)
    versions = {old: [b"old%03d" % i * (i + 1) for i in range(40)],
                new: [b"new%03d" % i * (i + 1) for i in range(40)]}
    expected = list(versions.values())
    idx_dir = tmp_path / "idx"
    path = write_shard(tmp_path, "s", old)
    stop = threading.Event()
    bad = []

    def writer():
        flip = 0
        while not stop.is_set():
            flip ^= 1
            tmp = tmp_path / f"up{flip}.tmp"
            tmp.write_bytes(new if flip else old)
            os.utime(tmp, ns=(0, 1_700_000_000_000_000_000))
            os.replace(tmp, path)

    def reader(tries):
        for _ in range(tries):
            with open_shard(path, index_dir=idx_dir) as sh:
                got = sh.read_many(names)
            if got not in expected:
                bad.append(got)

    w = threading.Thread(target=writer)
    w.start()
    readers = [threading.Thread(target=reader, args=(150,)) for _ in range(2)]
    try:
        for r in readers:
            r.start()
        for r in readers:
            r.join()
    finally:
        stop.set()
        w.join()
    assert not bad, f"{len(bad)} of 300 reads mixed two versions"


# ---- persisted indexes are verified

def tamper_cases():
    """name -> function(fields) returning altered body fields; fields are
    [fmt, identity, data_len, raw, names, offsets, sizes, kinds]."""
    import array

    def col(f, i, change):
        a = array.array("q")
        a.frombytes(f[i])
        change(a)
        f[i] = a.tobytes()
        return f

    def at(i, v):
        def change(a):
            a[i] = v
        return change

    return {
        "offset moved": lambda f: col(f, 5, lambda a: a.__setitem__(3, a[3] + 512)),
        "offset unaligned": lambda f: col(f, 5, lambda a: a.__setitem__(3, a[3] + 1)),
        "size grown": lambda f: col(f, 6, lambda a: a.__setitem__(3, a[3] + 700)),
        "negative size": lambda f: col(f, 6, at(2, -5)),
        "negative offset": lambda f: col(f, 5, at(0, -512)),
        "huge size": lambda f: col(f, 6, at(4, 1 << 60)),
        "past the end": lambda f: col(f, 5, at(len(f[4]) - 1, 1 << 40)),
        "offsets out of order": lambda f: col(f, 5, lambda a: a.reverse()),
        "names not str": lambda f: f[:4] + [tuple(range(len(f[4])))] + f[5:],
        "name too long": lambda f: f[:4] + [("x" * 5000,) + f[4][1:]] + f[5:],
        "unknown kind": lambda f: f[:7] + [b"\x09" + f[7][1:]],
        "count mismatch": lambda f: f[:4] + [f[4][:-1]] + f[5:],
        "column type": lambda f: f[:5] + ["offsets"] + f[6:],
        "data length type": lambda f: f[:2] + ["big"] + f[3:],
        "data length shrunk": lambda f: f[:2] + [600] + f[3:],
        "tar data length": lambda f: f[:2] + [f[2] + 4096] + f[3:],  # plain TAR: the file size
        "missing field": lambda f: f[:-1],
    }


def persisted(tmp_path, fmt="tar"):
    idx_dir = tmp_path / "idx"
    path = write_shard(tmp_path, "s", shard_bytes(), fmt)
    with open_shard(path, index_dir=idx_dir) as sh:
        truth = sh.members()
    return idx_dir, path, index_file(idx_dir, path), truth


def body_fields(file):
    blob = file.read_bytes()
    return list(msgpack.unpackb(blob[len(index._MAGIC) + index._DIGEST:], use_list=False))


def check_rebuilt(idx_dir, path, file, truth, stats, fmt="tar"):
    """The shard reads correctly, the bad index was rejected and replaced by a good one."""
    memory.DEFAULT.clear()
    with bounded(), open_shard(path, index_dir=idx_dir) as sh:
        assert sh.members() == truth
        assert sh.read("m/009.txt") == b"9" * 10
        assert sh.read_many(["m/049.txt", "m/000.txt"]) == [b"49" * 50, b"0"]
    assert stats()["rejects"] == 1 and stats()["builds"] == 2 and stats()["saves"] == 2
    assert file.is_file() and not file.is_symlink()
    memory.DEFAULT.clear()
    with open_shard(path, index_dir=idx_dir) as sh:
        assert sh.members() == truth
    assert stats()["loads"] == 1


@pytest.mark.parametrize("fmt,case", [(fmt, case) for fmt in ("tar", "tgz")
                                      for case in sorted(tamper_cases())
                                      if fmt == "tar" or case != "tar data length"])
def test_well_formed_but_wrong_index_with_valid_checksum(tmp_path, stats, case, fmt):
    idx_dir, path, file, truth = persisted(tmp_path, fmt)
    fields = tamper_cases()[case](body_fields(file))
    file.write_bytes(index.seal(msgpack.packb(fields)))
    check_rebuilt(idx_dir, path, file, truth, stats, fmt)


@pytest.mark.parametrize("case", ["names swapped", "sizes swapped", "byte flipped", "truncated",
                                  "garbage"])
def test_altered_index_fails_its_checksum(tmp_path, stats, case):
    idx_dir, path, file, truth = persisted(tmp_path)
    blob = bytearray(file.read_bytes())
    head = len(index._MAGIC) + index._DIGEST
    if case == "names swapped":
        i, j = blob.index(b"m/001.txt"), blob.index(b"m/002.txt")
        blob[i:i + 9], blob[j:j + 9] = blob[j:j + 9], blob[i:i + 9]
    elif case == "sizes swapped":
        fields = body_fields(file)
        sizes = bytearray(fields[6])
        sizes[0:8], sizes[8:16] = sizes[8:16], sizes[0:8]
        blob[head:] = msgpack.packb(fields[:6] + [bytes(sizes)] + fields[7:])
    elif case == "byte flipped":
        blob[-3] ^= 1
    elif case == "truncated":
        del blob[-20:]
    else:
        blob[:] = os.urandom(300)
    file.write_bytes(bytes(blob))
    check_rebuilt(idx_dir, path, file, truth, stats)


def test_index_of_another_version_is_stale_not_rejected(tmp_path, stats):
    idx_dir, path, file, truth = persisted(tmp_path)
    fields = body_fields(file)
    fields[1] = fields[1][:5] + ("other-version",)
    file.write_bytes(index.seal(msgpack.packb(fields)))
    memory.DEFAULT.clear()
    with open_shard(path, index_dir=idx_dir) as sh:
        assert sh.members() == truth
    assert stats()["rejects"] == 0 and stats()["loads"] == 0 and stats()["builds"] == 2


def test_fifo_in_place_of_the_index_does_not_hang(tmp_path, stats):
    idx_dir, path, file, truth = persisted(tmp_path)
    file.unlink()
    os.mkfifo(file)
    check_rebuilt(idx_dir, path, file, truth, stats)


def test_dev_zero_symlinked_in_place_of_the_index(tmp_path, stats):
    idx_dir, path, file, truth = persisted(tmp_path)
    file.unlink()
    file.symlink_to("/dev/zero")
    check_rebuilt(idx_dir, path, file, truth, stats)


def test_oversized_index_file_is_not_read(tmp_path, stats, monkeypatch):
    idx_dir, path, file, truth = persisted(tmp_path)
    cap = index.file_cap(os.path.getsize(path))
    with open(file, "r+b") as f:
        f.truncate(cap + 1)
    reads = []
    real_read = os.read
    with monkeypatch.context() as m:
        m.setattr(os, "read", lambda fd, n: reads.append(n) or real_read(fd, n))
        assert index._load(file, identity_of(path), "tar", memory.ShardMemory()) is None
    assert not reads  # refused on its fstat size, before reading a byte
    check_rebuilt(idx_dir, path, file, truth, stats)


def test_symlinked_shard_shares_index(tmp_path, stats):
    idx_dir = tmp_path / "idx"
    path = write_shard(tmp_path, "s", shard_bytes())
    link = tmp_path / "link.tar"
    link.symlink_to(path)
    open_shard(path, index_dir=idx_dir).close()
    memory.DEFAULT.clear()
    with open_shard(link, index_dir=idx_dir) as sh:
        assert sh.read("m/000.txt") == b"0"
    assert stats()["loads"] == 1 and len(os.listdir(idx_dir)) == 1


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
    memory.DEFAULT.clear()
    with open_shard(path, index_dir=idx_dir) as sh:
        assert sh.read(name) == b"v"
        assert [m.name for m in sh.members()] == [name, "ok"]
    assert stats()["loads"] == 1


def test_lru_is_bounded_by_bytes(tmp_path):
    with open_shard(write_shard(tmp_path, "w", shard_bytes(3))) as sh:
        one = index.ShardIndex.from_members(sh.members()).weight
    mine = memory.ShardMemory(3 * one)
    paths = [write_shard(tmp_path, f"s{i}", shard_bytes(3)) for i in range(6)]
    for p in paths:
        open_shard(p, memory=mine).close()
    assert len(mine.parsed) == 3 and mine.parsed.weight == 3 * one
    assert mine.stats["builds"] == 6


def test_first_regular_file_wins_in_index(tmp_path):
    data = make_tar([("d", b"one"), ("d", b"two")])
    idx_dir = tmp_path / "idx"
    path = write_shard(tmp_path, "dup", data)
    open_shard(path, index_dir=idx_dir).close()
    memory.DEFAULT.clear()
    with open_shard(path, index_dir=idx_dir) as sh:
        assert sh.read("d") == b"one"


def test_unlinked_shard_is_indexed_in_memory_only(tmp_path, stats):
    idx_dir = tmp_path / "idx"
    path = write_shard(tmp_path, "s", shard_bytes())
    fd = os.open(path, os.O_RDONLY)
    path.unlink()
    with open_shard(fd, index_dir=idx_dir) as sh:
        assert sh.read("m/004.txt") == b"4" * 5
    assert stats() == counts(builds=1) and not idx_dir.exists()
