import io
import os
import subprocess
import sys
import threading
import time

import pytest

from getbatch.store import BucketExists, BucketNotFound, InvalidName, LocalStore


def put_bytes(store, bucket, name, data):
    return store.put(bucket, name, io.BytesIO(data), len(data))


def test_create_list_destroy(tmp_path):
    s = LocalStore(tmp_path)
    assert s.list_buckets() == []
    for b in ("zeta", "alpha", "Mid.1"):
        s.create_bucket(b)
    assert s.list_buckets() == ["Mid.1", "alpha", "zeta"]
    assert s.has_bucket("alpha") and not s.has_bucket("nope")
    s.require_bucket("alpha")
    put_bytes(s, "alpha", "d/x", b"1")
    s.destroy_bucket("alpha")
    assert not s.has_bucket("alpha")
    assert s.list_buckets() == ["Mid.1", "zeta"]
    assert os.listdir(os.path.join(s.data_dir, ".sys", "trash")) == []


def test_bucket_errors(tmp_path):
    s = LocalStore(tmp_path)
    s.create_bucket("b")
    with pytest.raises(BucketExists, match=r'^bucket "ais://b" already exists$'):
        s.create_bucket("b")
    with pytest.raises(BucketNotFound, match=r'^bucket "ais://x" does not exist$'):
        s.destroy_bucket("x")
    with pytest.raises(BucketNotFound):
        s.require_bucket("x")
    with pytest.raises(InvalidName):
        s.create_bucket("..")
    with pytest.raises(InvalidName):
        s.require_bucket("a/b")
    assert not s.has_bucket("..") and not s.has_bucket("")


def test_recreated_bucket_is_empty(tmp_path):
    s = LocalStore(tmp_path)
    s.create_bucket("b")
    put_bytes(s, "b", "o", b"x")
    s.destroy_bucket("b")
    s.create_bucket("b")
    assert s.list_objects("b") == ([], "")


def test_stray_entries_are_not_buckets(tmp_path):
    s = LocalStore(tmp_path)
    open(os.path.join(s.data_dir, "ais", "file"), "w").close()
    os.mkdir(os.path.join(s.data_dir, "ais", "bad name"))
    assert s.list_buckets() == []


def test_bucket_from_other_process_is_visible(tmp_path):
    s = LocalStore(tmp_path)
    assert not s.has_bucket("fromchild")
    code = ("import sys; from getbatch.store import LocalStore; "
            "LocalStore(sys.argv[1]).create_bucket('fromchild')")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True)
    assert s.has_bucket("fromchild")
    assert "fromchild" in s.list_buckets()
    s.require_bucket("fromchild")


def test_layout(tmp_path):
    s = LocalStore(tmp_path)
    for d in ("ais", ".sys/tmp", ".sys/trash", ".sys/shard-index", ".sys/append"):
        assert os.path.isdir(tmp_path / d)
    s.create_bucket("b")
    put_bytes(s, "b", "x/y", b"1")
    assert (tmp_path / "ais" / "b" / "x" / "y").read_bytes() == b"1"


def test_stale_temp_files_swept_on_start(tmp_path):
    LocalStore(tmp_path)
    old = time.time() - 7200
    paths = {}
    for sub in ("tmp", "append"):
        for age in ("old", "new"):
            p = tmp_path / ".sys" / sub / f"{age}-leftover"
            p.write_bytes(b"partial")
            if age == "old":
                os.utime(p, (old, old))
            paths[sub, age] = p
    LocalStore(tmp_path)
    assert not paths["tmp", "old"].exists() and not paths["append", "old"].exists()
    assert paths["tmp", "new"].exists() and paths["append", "new"].exists()


def test_put_never_recreates_destroyed_bucket(tmp_path):
    s = LocalStore(tmp_path)
    for _ in range(5):
        s.create_bucket("x")
        unexpected = []

        def writer():
            for i in range(40):
                try:
                    put_bytes(s, "x", f"d{i % 3}/o{i}", b"1")
                except BucketNotFound:
                    pass
                except Exception as e:  # surfaced below
                    unexpected.append(e)

        t = threading.Thread(target=writer)
        t.start()
        s.destroy_bucket("x")
        t.join()
        assert unexpected == []
        assert not s.has_bucket("x")
