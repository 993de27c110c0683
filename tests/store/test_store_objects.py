import io
import os
import threading

import pytest

from getbatch.store import (BucketNotFound, Conflict, IncompleteUpload, InvalidName,
                            ObjectNotFound)
from getbatch.store import attrs as meta


def put_bytes(store, bucket, name, data):
    return store.put(bucket, name, io.BytesIO(data), len(data))


def read(store, bucket, name):
    f, _ = store.open(bucket, name)
    with f:
        return f.read()


def tmp_files(store):
    return os.listdir(os.path.join(store.data_dir, ".sys", "tmp"))


class FailingStream:
    """Gives `good` bytes, then raises (a client that disconnects mid-upload)."""

    def __init__(self, good):
        self.data = io.BytesIO(good)

    def read(self, n):
        chunk = self.data.read(min(n, 3))
        if not chunk:
            raise ConnectionResetError("client went away")
        return chunk


@pytest.mark.parametrize("name", ["o", "d/e/f.bin", "sp ace+plus%25", "日本/語.txt", ".hidden"])
def test_put_stat_read_delete(store, name):
    a = put_bytes(store, "b", name, b"hello world")
    assert (a.size, a.name, a.bucket) == (11, name, "b")
    st = store.stat("b", name)
    assert st.size == 11 and st.mtime_ns > 0 and st.atime_ns > 0
    assert read(store, "b", name) == b"hello world"
    store.delete("b", name)
    with pytest.raises(ObjectNotFound) as ei:
        store.stat("b", name)
    assert str(ei.value) == f"ais://b/{name} does not exist"
    # empty parent directories are pruned, the bucket dir stays
    assert os.listdir(os.path.join(store.data_dir, "ais", "b")) == []
    assert store.has_bucket("b")


def test_put_without_length_reads_to_eof(store):
    a = store.put("b", "o", io.BytesIO(b"x" * 3_000_000))
    assert a.size == 3_000_000 and store.stat("b", "o").size == 3_000_000


def test_put_reads_only_length_bytes(store):
    stream = io.BytesIO(b"0123456789")
    store.put("b", "o", stream, 4)
    assert read(store, "b", "o") == b"0123" and stream.read() == b"456789"


def test_empty_object(store):
    assert put_bytes(store, "b", "empty", b"").size == 0
    assert read(store, "b", "empty") == b""


def test_checksum_and_version(store):
    a1 = put_bytes(store, "b", "o", b"abc")
    a2 = put_bytes(store, "b", "o", b"abcd")
    if not store._xattrs or meta.xxhash is None:
        pytest.skip("no xattrs or no xxhash here")
    assert (a1.version, a2.version) == ("1", "2")
    assert a2.cksum_type == "xxhash2"
    assert a2.cksum_value == meta.xxhash.xxh64(b"abcd").hexdigest()
    st = store.stat("b", "o")
    assert (st.version, st.cksum_type, st.cksum_value) == ("2", "xxhash2", a2.cksum_value)
    store.delete("b", "o")
    assert put_bytes(store, "b", "o", b"x").version == "1"


def test_open_read_gives_fd_and_attrs(store):
    put_bytes(store, "b", "o", b"data!")
    f, a = store.open("b", "o")
    with f:
        assert os.pread(f.fileno(), 5, 0) == b"data!"
        put_bytes(store, "b", "o", b"replaced")  # the open file keeps the old content
        assert a.size == 5 and f.read() == b"data!"


def test_missing_objects_and_buckets(store):
    for op in (store.stat, store.open, store.delete):
        with pytest.raises(ObjectNotFound) as ei:
            op("b", "nope/x")
        assert (ei.value.bucket, ei.value.name) == ("b", "nope/x")
        with pytest.raises(BucketNotFound, match='^bucket "ais://zz" does not exist$'):
            op("zz", "x")
    with pytest.raises(BucketNotFound):
        put_bytes(store, "zz", "x", b"1")


def test_directories_are_not_objects(store):
    put_bytes(store, "b", "dir/obj", b"1")
    for op in (store.stat, store.open, store.delete):
        with pytest.raises(ObjectNotFound):
            op("b", "dir")
    put_bytes(store, "b", "file", b"1")
    with pytest.raises(ObjectNotFound):
        store.stat("b", "file/below")


def test_file_directory_conflicts(store):
    put_bytes(store, "b", "a", b"1")
    with pytest.raises(Conflict) as ei:
        put_bytes(store, "b", "a/b", b"2")
    assert (ei.value.bucket, ei.value.name) == ("b", "a/b")
    put_bytes(store, "b", "x/y/z", b"1")
    with pytest.raises(Conflict):
        put_bytes(store, "b", "x/y", b"2")
    with pytest.raises(Conflict):
        put_bytes(store, "b", "x", b"2")
    assert read(store, "b", "a") == b"1" and read(store, "b", "x/y/z") == b"1"
    assert tmp_files(store) == []


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/etc/passwd", "~/x", "d/", "", "a\0"])
def test_invalid_names_refused(store, name):
    with pytest.raises(InvalidName):
        store.object_path("b", name)
    with pytest.raises(InvalidName):
        put_bytes(store, "b", name, b"1")


def test_overlong_names(store):
    with pytest.raises(InvalidName, match="longer than 255 bytes"):
        store.object_path("b", "d/" + "x" * 256)
    with pytest.raises(InvalidName):
        store.object_path("b", "/".join(["y" * 200] * 20))
    put_bytes(store, "b", "é" * 127, b"ok")  # 254 bytes in UTF-8


def test_invalid_bucket_name_on_object_ops(store):
    with pytest.raises(InvalidName):
        store.stat("..", "x")


# ---- atomicity ----------------------------------------------------------------------------

def test_short_stream_leaves_nothing(store):
    with pytest.raises(IncompleteUpload) as ei:
        store.put("b", "o", io.BytesIO(b"12345"), 10)
    assert (ei.value.expected, ei.value.received) == (10, 5)
    with pytest.raises(ObjectNotFound):
        store.stat("b", "o")
    assert tmp_files(store) == []
    assert store.list_objects("b") == ([], "")


def test_raising_stream_leaves_nothing(store):
    with pytest.raises(ConnectionResetError):
        store.put("b", "new/o", FailingStream(b"abcdefgh"), 100)
    with pytest.raises(ObjectNotFound):
        store.stat("b", "new/o")
    assert tmp_files(store) == []


def test_failed_overwrite_keeps_old_object(store):
    old = put_bytes(store, "b", "o", b"original")
    with pytest.raises(ConnectionResetError):
        store.put("b", "o", FailingStream(b"new content"), None)
    with pytest.raises(IncompleteUpload):
        store.put("b", "o", io.BytesIO(b"new"), 99)
    assert read(store, "b", "o") == b"original"
    assert store.stat("b", "o").version == old.version
    assert tmp_files(store) == []


def test_concurrent_puts_same_name(store):
    payloads = [bytes([65 + i]) * (200_000 + i) for i in range(8)]
    barrier = threading.Barrier(len(payloads))
    errors = []

    def work(data):
        barrier.wait()
        try:
            for _ in range(3):
                put_bytes(store, "b", "hot/obj", data)
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert read(store, "b", "hot/obj") in payloads
    assert tmp_files(store) == []
    if store._xattrs:
        assert store.stat("b", "hot/obj").version == str(3 * len(payloads))


def test_concurrent_put_and_delete_in_same_directory(store):
    """A delete pruning an empty directory must not break a PUT creating a sibling."""
    stop = threading.Event()

    def churn():
        while not stop.is_set():
            put_bytes(store, "b", "d/e/churn", b"1")
            store.delete("b", "d/e/churn")

    t = threading.Thread(target=churn)
    t.start()
    try:
        for i in range(200):
            put_bytes(store, "b", f"d/e/keep{i}", b"k")
    finally:
        stop.set()
        t.join()
    names = [e.name for e in store.list_objects("b")[0]]
    assert names == sorted(f"d/e/keep{i}" for i in range(200))


# ---- symlink confinement --------------------------------------------------------------------

def test_symlink_file_escaping_bucket_refused(store, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"secret")
    bdir = os.path.join(store.data_dir, "ais", "b")
    os.symlink(secret, os.path.join(bdir, "link"))
    for op in (store.object_path, store.stat, store.open):
        with pytest.raises(InvalidName, match="outside the bucket"):
            op("b", "link")
    assert [e.name for e in store.list_objects("b")[0]] == []


def test_symlinked_directory_escaping_bucket_refused(store, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f").write_bytes(b"x")
    bdir = os.path.join(store.data_dir, "ais", "b")
    os.symlink(outside, os.path.join(bdir, "sub"))
    with pytest.raises(InvalidName):
        store.stat("b", "sub/f")
    with pytest.raises(InvalidName):
        put_bytes(store, "b", "sub/new", b"1")
    with pytest.raises(InvalidName):
        store.delete("b", "sub/f")
    assert not (outside / "new").exists() and (outside / "f").exists()
    assert store.list_objects("b", prefix="sub/") == ([], "")


def test_symlink_within_bucket_allowed(store):
    put_bytes(store, "b", "real/obj", b"inside")
    bdir = os.path.join(store.data_dir, "ais", "b")
    os.symlink("real/obj", os.path.join(bdir, "alias"))
    assert read(store, "b", "alias") == b"inside"
    assert [e.name for e in store.list_objects("b")[0]] == ["alias", "real/obj"]


def _read_source(src):
    try:
        return os.pread(src.fileno(), 1 << 20, 0)
    finally:
        src.close()


@pytest.mark.parametrize("fds", [0, 10_000])
def test_batch_reader_sources_match_stat_and_refuse_escapes(store, tmp_path, monkeypatch, fds):
    """Both ways a batch reads an object: opened while planning (within the fd budget) and
    opened when sent (past it, `lazy`)."""
    monkeypatch.setattr(store.fds, "free", fds)
    store.create_bucket("lb")
    store.put("lb", "d/x", io.BytesIO(b"12345"), 5)
    store.put("lb", "top", io.BytesIO(b"1"), 1)
    reader = store.batch_reader(100)
    try:
        for name, want in (("d/x", b"12345"), ("d/x", b"12345"), ("top", b"1")):
            src = reader.source("lb", name)
            assert src.lazy == (fds == 0) and src.size == len(want)
            assert _read_source(src) == want
        for missing in ("nope", "d/nope", "d"):
            with pytest.raises(ObjectNotFound):
                reader.source("lb", missing)
        with pytest.raises(InvalidName, match="too long"):
            reader.source("lb", "x" * 300)
        bdir = os.path.join(store.data_dir, "ais", "lb")
        os.symlink("top", os.path.join(bdir, "inner-link"))
        assert _read_source(reader.source("lb", "inner-link")) == b"1"
        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / "secret").write_bytes(b"s")
        os.symlink(outside, os.path.join(bdir, "link"))
        os.symlink(outside / "secret", os.path.join(bdir, "out-link"))
        for name in ("link/secret", "out-link"):
            with pytest.raises(InvalidName):
                reader.source("lb", name)
    finally:
        reader.close()
    assert store.fds.free == fds


def test_symlinked_bucket_directory_is_not_a_bucket(store, tmp_path):
    outside = tmp_path / "elsewhere"
    (outside / "sub").mkdir(parents=True)
    (outside / "sub" / "f").write_bytes(b"x")
    os.symlink(outside, os.path.join(store.data_dir, "ais", "lnk"))
    assert not store.has_bucket("lnk") and "lnk" not in store.list_buckets()
    for op in (store.stat, store.open, store.delete):
        with pytest.raises(BucketNotFound):
            op("lnk", "sub/f")
    with pytest.raises(BucketNotFound):
        put_bytes(store, "lnk", "new", b"1")
    with pytest.raises(BucketNotFound):
        store.destroy_bucket("lnk")
    assert (outside / "sub" / "f").read_bytes() == b"x" and not (outside / "new").exists()
    assert os.path.islink(os.path.join(store.data_dir, "ais", "lnk"))


def test_leftovers_too_young_at_start_are_swept_later(store, monkeypatch):
    """A node restarted within seconds of a crash cannot tell the dead upload's temp file from
    one just starting; it reclaims it on a later sweep, not at its next restart."""
    import time

    from getbatch.store import LocalStore, local

    leftover = os.path.join(store.data_dir, ".sys", "tmp", "0123456789abcdef0123456789abcdef")
    with open(leftover, "wb") as f:
        f.write(b"partial upload of a process that died a moment ago")
    monkeypatch.setattr(local, "RESWEEP_EVERY", 0.0, raising=False)
    restarted = LocalStore(store.data_dir)
    assert os.path.exists(leftover) and restarted.reclaimed == 0
    old = time.time() - 10
    os.utime(leftover, (old, old))      # a little later
    put_bytes(restarted, "b", "next", b"x")
    assert not os.path.exists(leftover) and restarted.reclaimed == 1
    assert tmp_files(restarted) == [] and read(restarted, "b", "next") == b"x"
