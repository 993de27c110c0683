"""What every storage backend must do: the conformance tests of the `store.Backend` interface.

A backend's test module subclasses `BackendConformance` and provides a `backend` fixture (an
empty backend) and, if the backend can be written behind its back, nothing else: every test
here goes through the interface only. The local store and the S3 backend (over a moto
server, test_conformance_s3.py) run it; the peer backend will run the same class.
"""
import io
import tarfile

import pytest

from getbatch.archive import MemberNotFound, NotAnArchive
from getbatch.store import (BucketExists, BucketNotFound, InvalidName, ObjectNotFound,
                            ObjectAttrs)


def put(backend, bucket, name, data):
    return backend.put(bucket, name, io.BytesIO(data), len(data))


def read_all(backend, bucket, name):
    src, attrs = backend.open(bucket, name)
    with src:
        assert src.size == attrs.size
        return b"".join(src.chunks(0, src.size))


def tar_bytes(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


class BackendConformance:
    """Subclass as `Test<Backend>Conformance` and define the `backend` fixture."""

    @pytest.fixture
    def bucket(self, backend):
        backend.create_bucket("conf")
        return "conf"

    # ---- buckets
    def test_bucket_lifecycle(self, backend):
        assert not backend.has_bucket("lc")
        with pytest.raises(BucketNotFound) as ei:
            backend.require_bucket("lc")
        assert f'"{backend.provider}://lc"' in str(ei.value)
        backend.create_bucket("lc")
        assert backend.has_bucket("lc") and "lc" in backend.list_buckets()
        backend.require_bucket("lc")
        assert backend.bucket_props("lc")["provider"] == backend.provider
        with pytest.raises(BucketExists):
            backend.create_bucket("lc")
        put(backend, "lc", "x", b"1")
        backend.destroy_bucket("lc")
        assert not backend.has_bucket("lc") and "lc" not in backend.list_buckets()
        with pytest.raises(BucketNotFound):
            backend.destroy_bucket("lc")
        with pytest.raises(BucketNotFound):
            backend.stat("lc", "x")

    @pytest.mark.parametrize("name", ["", "a/b", "..", "x" * 65])
    def test_bad_bucket_names(self, backend, name):
        assert not backend.has_bucket(name)
        with pytest.raises(InvalidName):
            backend.create_bucket(name)

    # ---- objects
    @pytest.mark.parametrize("name", ["o", "d/e/f.bin", "日本語/データ.txt", "emoji-🙂", "sp ace%20"])
    def test_put_stat_open_delete(self, backend, bucket, name):
        a = put(backend, bucket, name, b"hello world")
        assert isinstance(a, ObjectAttrs) and (a.size, a.name, a.bucket) == (11, name, bucket)
        st = backend.stat(bucket, name)
        assert st.size == 11 and st.name == name
        assert read_all(backend, bucket, name) == b"hello world"
        backend.delete(bucket, name)
        with pytest.raises(ObjectNotFound) as ei:
            backend.stat(bucket, name)
        assert str(ei.value) == f"{backend.provider}://{bucket}/{name} does not exist"
        with pytest.raises(ObjectNotFound):
            backend.delete(bucket, name)

    def test_missing_objects(self, backend, bucket):
        for op in (backend.stat, backend.open, backend.delete, backend.open_shard):
            with pytest.raises(ObjectNotFound):
                op(bucket, "nope")
            with pytest.raises(BucketNotFound):
                op("no-such-bucket", "nope")

    @pytest.mark.parametrize("name", ["../x", "/abs", "a//b", "a\nb", "a\rb", "\udcff"])
    def test_bad_object_names(self, backend, bucket, name):
        with pytest.raises(InvalidName):
            put(backend, bucket, name, b"1")
        with pytest.raises(InvalidName):
            backend.stat(bucket, name)

    def test_an_open_source_keeps_its_version(self, backend, bucket):
        put(backend, bucket, "v", b"first version")
        src, attrs = backend.open(bucket, "v")
        with src:
            put(backend, bucket, "v", b"second, longer version")
            assert attrs.size == src.size == 13
            assert src.pread(5, 6) == b"versi"
            assert b"".join(src.chunks(0, 13)) == b"first version"
        assert read_all(backend, bucket, "v") == b"second, longer version"

    def test_failed_put_keeps_the_old_version(self, backend, bucket):
        put(backend, bucket, "keep", b"old")

        class Broken:
            def __init__(self):
                self.calls = 0

            def read(self, n):
                self.calls += 1
                if self.calls > 1:
                    raise ConnectionResetError("client went away")
                return b"new data"

        with pytest.raises(ConnectionResetError):
            backend.put(bucket, "keep", Broken(), 100)
        assert read_all(backend, bucket, "keep") == b"old"
        with pytest.raises(Exception):
            backend.put(bucket, "never", io.BytesIO(b"short"), 10)
        with pytest.raises(ObjectNotFound):
            backend.stat(bucket, "never")

    def test_append_and_flush(self, backend, bucket):
        h = backend.append(bucket, "ap", "", io.BytesIO(b"abc"), 3)
        h = backend.append(bucket, "ap", h, io.BytesIO(b"def"), 3)
        with pytest.raises(ObjectNotFound):
            backend.stat(bucket, "ap")
        backend.flush(bucket, "ap", h)
        assert read_all(backend, bucket, "ap") == b"abcdef"

    # ---- listing
    def test_listing_pages_prefix_and_start_after(self, backend, bucket):
        names = sorted(["a-c", "a/b", "a0", "b/1", "b/2", "b/3", "c", "日本"])
        for n in names:
            put(backend, bucket, n, n.encode())
        got, token = [], ""
        while True:
            page, token = backend.list_objects(bucket, page_size=3, token=token)
            assert len(page) <= 3
            got += [(e.name, e.size) for e in page]
            if not token:
                break
        assert got == [(n, len(n.encode())) for n in names]
        assert [e.name for e in backend.list_objects(bucket, prefix="b/")[0]] == ["b/1", "b/2", "b/3"]
        assert [e.name for e in backend.list_objects(bucket, start_after="b/2")[0]] == ["b/3", "c", "日本"]
        with pytest.raises(BucketNotFound):
            backend.list_objects("no-such-bucket")

    # ---- shards and batches
    def test_open_shard(self, backend, bucket):
        put(backend, bucket, "s.tar", tar_bytes({"x.wav": b"wav!", "d/y.txt": b"yy"}))
        put(backend, bucket, "plain", b"not an archive at all" * 40)
        with backend.open_shard(bucket, "s.tar") as shard:
            assert shard.read_many(["d/y.txt", "x.wav"]) == [b"yy", b"wav!"]
            with pytest.raises(MemberNotFound):
                shard.lookup("nope")
        with pytest.raises(NotAnArchive):
            backend.open_shard(bucket, "plain")

    def test_a_shard_replaced_by_another_of_the_same_size_is_read_anew(self, backend, bucket):
        put(backend, bucket, "r.tar", tar_bytes({"a": b"AAAA", "b": b"BBBB"}))
        with backend.open_shard(bucket, "r.tar") as shard:
            assert shard.read("a") == b"AAAA"
        put(backend, bucket, "r.tar", tar_bytes({"b": b"bbbb", "a": b"aaaa"}))
        with backend.open_shard(bucket, "r.tar") as shard:
            assert shard.read_many(["a", "b"]) == [b"aaaa", b"bbbb"]

    def test_batch_reader(self, backend, bucket):
        put(backend, bucket, "o1", b"one")
        put(backend, bucket, "s.tar", tar_bytes({"m": b"member"}))
        reader = backend.batch_reader(10)
        try:
            src = reader.source(bucket, "o1")
            assert src.size == 3 and b"".join(src.chunks(0, 3)) == b"one"
            src.close()
            assert reader.shard(bucket, "s.tar") is reader.shard(bucket, "s.tar")
            assert reader.shard(bucket, "s.tar").read("m") == b"member"
            with pytest.raises(ObjectNotFound):
                reader.source(bucket, "nope")
        finally:
            reader.close()
