"""The remote backend's own promises, against a real moto S3 server: a read cache that is
verified (changed remote object fetched again, deleted one a 404, partial downloads never
visible, LRU within its budget), ranged reads of remote shards, errors, prefetch/evict."""
import hashlib
import io
import itertools
import os
import zipfile

import pytest

from getbatch.store import BucketNotFound, ObjectNotFound
from getbatch.store.errors import AccessDenied, RemoteUnavailable
from getbatch.store.remote import RemoteStore
from getbatch.store.s3 import S3Client

from ..remote_servers import Process, boto3_client, free_port
from tests.archive.tarhelp import make_tar

_n = itertools.count()


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


@pytest.fixture
def s3(moto):
    return boto3_client(moto)


@pytest.fixture
def bucket(s3):
    name = f"rs-{os.getpid()}-{next(_n)}"
    s3.create_bucket(Bucket=name)
    return name


class Counting(S3Client):
    """The real S3 client, counting the GETs it makes and the bytes they bring."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.gets = 0
        self.conditional = 0
        self.bytes = 0
        self.fail_after = None  # bytes after which a body read raises (a dropped connection)

    def get(self, bucket, name, offset=0, length=None, if_match="", if_none_match=""):
        self.gets += 1
        self.conditional += bool(if_none_match)
        meta, body = super().get(bucket, name, offset, length, if_match, if_none_match)
        return meta, _CountedBody(body, self)


class _CountedBody:
    def __init__(self, body, client):
        self.body = body
        self.client = client

    def read(self, n):
        c = self.client
        if c.fail_after is not None and c.bytes >= c.fail_after:
            raise ConnectionResetError("connection to S3 dropped")
        data = self.body.read(n if c.fail_after is None else min(n, 4096))
        c.bytes += len(data)
        return data

    def close(self):
        self.body.close()


@pytest.fixture
def store(moto, tmp_path):
    return RemoteStore(Counting(moto.url, "us-east-1"), tmp_path / "data", cache_bytes=4 << 20)


def cache_files(store):
    return sorted(n for n in os.listdir(store.cache.dir) if n.endswith(".object"))


def read(src):
    with src:
        return b"".join(src.chunks(0, src.size))


def test_read_cache_is_validated_against_the_remote(store, s3, bucket):
    s3.put_object(Bucket=bucket, Key="o", Body=b"version one")
    assert read(store.local_copy(bucket, "o")) == b"version one"      # fetched, cached
    c = store.client
    assert (c.gets, c.bytes) == (1, 11) and len(cache_files(store)) == 1
    assert read(store.local_copy(bucket, "o")) == b"version one"      # 304: from the cache
    assert (c.gets, c.conditional, c.bytes) == (2, 1, 11)
    s3.put_object(Bucket=bucket, Key="o", Body=b"version two")         # behind our back
    assert read(store.local_copy(bucket, "o")) == b"version two"
    src, attrs = store.open(bucket, "o")
    assert read(src) == b"version two" and attrs.cksum_type == "md5"
    s3.delete_object(Bucket=bucket, Key="o")
    with pytest.raises(ObjectNotFound):
        store.local_copy(bucket, "o")
    with pytest.raises(ObjectNotFound):
        store.open(bucket, "o")


def test_a_damaged_cache_file_is_fetched_again(store, s3, bucket, tmp_path):
    s3.put_object(Bucket=bucket, Key="o", Body=b"x" * 300_000)
    read(store.local_copy(bucket, "o"))
    path = os.path.join(store.cache.dir, cache_files(store)[0])
    with open(path, "r+b") as f:
        f.seek(1000)
        f.write(b"y")
    fresh = RemoteStore(store.client, tmp_path / "data", cache_bytes=4 << 20)
    fresh.cache._verified.clear()  # as another process, which has verified nothing yet
    before = store.client.bytes
    assert read(fresh.local_copy(bucket, "o")) == b"x" * 300_000
    assert store.client.bytes == before + 300_000 and len(cache_files(store)) == 1


def test_a_partial_download_never_becomes_a_cache_entry(store, s3, bucket):
    s3.put_object(Bucket=bucket, Key="big", Body=os.urandom(200_000))
    store.client.fail_after = 50_000
    with pytest.raises(Exception):
        store.local_copy(bucket, "big")
    assert cache_files(store) == []
    assert not [n for n in os.listdir(store.cache.dir) if n.endswith(".tmp")]
    store.client.fail_after = None
    assert len(read(store.local_copy(bucket, "big"))) == 200_000


def test_cache_stays_within_its_budget_lru(store, s3, bucket):
    for i in range(6):
        s3.put_object(Bucket=bucket, Key=f"o{i}", Body=bytes([i]) * (1 << 20))
    for i in range(6):
        assert read(store.local_copy(bucket, f"o{i}")) == bytes([i]) * (1 << 20)
    sizes = [os.path.getsize(os.path.join(store.cache.dir, n)) for n in cache_files(store)]
    assert sum(sizes) <= 4 << 20 and len(sizes) == 3  # each file is 1 MiB + its trailer
    before = store.client.bytes
    read(store.local_copy(bucket, "o5"))        # most recent: still cached
    assert store.client.bytes == before
    read(store.local_copy(bucket, "o0"))        # least recent: evicted, fetched again
    assert store.client.bytes == before + (1 << 20)


def test_put_writes_through_and_caches(store, s3, bucket):
    attrs = store.put(bucket, "w/x", io.BytesIO(b"payload"), 7)
    assert s3.get_object(Bucket=bucket, Key="w/x")["Body"].read() == b"payload"
    assert attrs.size == 7 and len(cache_files(store)) == 1
    gets = store.client.gets
    assert read(store.local_copy(bucket, "w/x")) == b"payload"
    assert store.client.bytes == 0 and store.client.gets == gets + 1  # one 304


def test_prefetch_and_evict(store, s3, bucket):
    s3.put_object(Bucket=bucket, Key="p", Body=b"prefetched")
    assert store.prefetch(bucket, "p") == 10
    assert store.prefetch(bucket, "p") == 0          # current already
    assert len(cache_files(store)) == 1
    assert store.evict(bucket, "p") >= 10
    assert cache_files(store) == []
    with pytest.raises(ObjectNotFound):
        store.evict(bucket, "p")                    # nothing cached
    assert s3.get_object(Bucket=bucket, Key="p")["Body"].read() == b"prefetched"
    with pytest.raises(ObjectNotFound):
        store.prefetch(bucket, "nope")
    with pytest.raises(BucketNotFound):
        store.evict("no-such-bucket", "p")


@pytest.mark.parametrize("fmt", ["tar", "zip"])
def test_members_of_a_remote_shard_move_only_their_bytes(store, s3, bucket, fmt):
    members = [(f"m{i:03d}.bin", os.urandom(100_000)) for i in range(100)]   # 10 MB
    if fmt == "tar":
        blob = make_tar(members)
    else:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
            for n, d in members:
                zf.writestr(n, d)
        blob = buf.getvalue()
    s3.put_object(Bucket=bucket, Key=f"s.{fmt}", Body=blob)
    store.whole_below = 0  # this small shard is read as big ones are
    want = [members[i] for i in (3, 50, 97, 10, 11)]
    with store.open_shard(bucket, f"s.{fmt}") as shard:
        assert shard.read_many([n for n, _ in want]) == [d for _, d in want]
        ext = shard.extent(members[70][0])       # zero-copy path: the bytes are there first
        assert os.pread(shard.fileno(), ext[1], ext[0]) == members[70][1]
    moved = store.client.bytes
    assert moved < 1_000_000, moved              # the index and 6 members, not 10 MB
    assert store.cache.hint("aws", bucket, f"s.{fmt}") is None   # never downloaded whole
    assert len(cache_files(store)) == 6          # the members read, kept for next time
    with store.open_shard(bucket, f"s.{fmt}") as shard:   # the index is known now
        assert shard.read(members[99][0]) == members[99][1]
        assert shard.read_many([n for n, _ in want]) == [d for _, d in want]   # cached
    assert store.client.bytes - moved < 120_000


def test_compressed_shards_are_fetched_whole_once(store, s3, bucket):
    import gzip
    members = [(f"m{i}", os.urandom(5000)) for i in range(20)]
    s3.put_object(Bucket=bucket, Key="s.tgz", Body=gzip.compress(make_tar(members)))
    for _ in range(2):
        with store.open_shard(bucket, "s.tgz") as shard:
            assert shard.read_many(["m7", "m1"]) == [members[7][1], members[1][1]]
    assert len(cache_files(store)) == 1 and store.client.gets == 1  # then validated by HEAD


def test_remote_errors(moto, tmp_path, bucket):
    dead = f"http://127.0.0.1:{free_port()}"
    store = RemoteStore(S3Client(dead, "us-east-1"), tmp_path / "d1", cache_bytes=1 << 20)
    with pytest.raises(RemoteUnavailable) as ei:
        store.stat(bucket, "o")
    assert dead in str(ei.value)
    locked = Process(["moto_server", "-H", "127.0.0.1", "-p", "{port}"], "/moto-api/",
                     str(tmp_path / "locked.log"), env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    try:
        store = RemoteStore(S3Client(locked.url, "us-east-1"), tmp_path / "d2", cache_bytes=1 << 20)
        with pytest.raises(AccessDenied) as ei:
            store.stat(bucket, "o")
        assert f"aws://{bucket}/o" in str(ei.value) and "denied" in str(ei.value)
    finally:
        locked.stop()


class _Entry:
    def __init__(self, bucket, objname, archpath="", start=0, length=0):
        self.bucket, self.objname, self.archpath = bucket, objname, archpath
        self.start, self.length = start, length


def batch_read(store, entries):
    reader = store.batch_reader(len(entries))
    try:
        reader.prepare(entries)
        out = []
        for e in entries:
            if e.archpath:
                out.append(reader.shard(e.bucket, e.objname).read(e.archpath))
            else:
                src = reader.source(e.bucket, e.objname)
                with src:
                    data = src.pread(src.size, 0)
                out.append(data[e.start:e.start + e.length] if e.length else data)
        return out
    finally:
        reader.close()


def test_a_batch_validates_many_cached_objects_with_one_listing(store, s3, bucket):
    data = {f"d/o{i:03d}": os.urandom(100 + i) for i in range(40)}
    for k, v in data.items():
        s3.put_object(Bucket=bucket, Key=k, Body=v)
    s3.put_object(Bucket=bucket, Key="d/zzz-not-wanted", Body=b"x")
    entries = [_Entry(bucket, k) for k in data] + [_Entry(bucket, "d/o007")]
    assert batch_read(store, entries) == list(data.values()) + [data["d/o007"]]
    assert store.client.gets == 40                  # each fetched once, though named twice
    s3.put_object(Bucket=bucket, Key="d/o013", Body=b"changed")
    s3.delete_object(Bucket=bucket, Key="d/o021")
    gets = store.client.gets
    reader = store.batch_reader(41)
    try:
        reader.prepare(entries)
        with pytest.raises(ObjectNotFound):
            reader.source(bucket, "d/o021")
        with reader.source(bucket, "d/o013") as src:
            assert src.pread(100, 0) == b"changed"
        with reader.source(bucket, "d/o000") as src:
            assert src.pread(1000, 0) == data["d/o000"]
    finally:
        reader.close()
    assert store.client.gets == gets + 2            # the changed one, and the deleted one's 404


def test_batch_ranges_of_remote_objects_move_only_their_bytes(store, s3, bucket):
    blob = os.urandom(1 << 20)
    s3.put_object(Bucket=bucket, Key="r", Body=blob)
    got = batch_read(store, [_Entry(bucket, "r", start=1000, length=10),
                             _Entry(bucket, "r", start=5000, length=20)])
    assert got == [blob[1000:1010], blob[5000:5020]]
    assert store.client.bytes == 4020 and cache_files(store) == []


def test_a_cached_copy_never_reads_past_the_object(store, s3, bucket):
    """The cache file holds a trailer after the object's bytes: no read may return it."""
    s3.put_object(Bucket=bucket, Key="t", Body=b"0123456789")
    store.prefetch(bucket, "t")
    src, attrs = store.open(bucket, "t")
    with src:
        assert os.fstat(src.fileno()).st_size > 10           # a trailer is there
        assert src.pread(100, 0) == b"0123456789" and src.pread(100, 8) == b"89"
        assert src.pread(5, 10) == b"" and src.read() == b"0123456789" and src.read() == b""


def test_object_range_of_an_uncached_object_is_a_ranged_get(store, s3, bucket):
    blob = os.urandom(1 << 20)
    s3.put_object(Bucket=bucket, Key="g", Body=blob)
    src, attrs = store.open(bucket, "g")
    with src:
        assert attrs.size == 1 << 20 and src.fileno() is None
        assert b"".join(src.chunks(4096, 100)) == blob[4096:4196]
    assert store.client.bytes == 100 and cache_files(store) == []
    src, _ = store.open(bucket, "g")
    with src:                                      # all of it: fetched once, and cached
        assert b"".join(src.chunks(0, 1 << 20)) == blob
    assert len(cache_files(store)) == 1


def test_an_object_replaced_after_open_is_refused_not_mislabelled(store, s3, bucket):
    """open() labels the answer with the version its HEAD saw; the read is pinned to it
    (If-Match), so a replacement in between is a RemoteChanged (409), never the new bytes
    under the old version's labels (issue 16, 3)."""
    from getbatch.store.errors import RemoteChanged

    s3.put_object(Bucket=bucket, Key="r", Body=b"A" * 5000)
    src, attrs = store.open(bucket, "r")
    s3.put_object(Bucket=bucket, Key="r", Body=b"B" * 5000)           # same size, new ETag
    with src, pytest.raises(RemoteChanged):
        b"".join(src.chunks(0, 5000))
    src, attrs = store.open(bucket, "r")
    s3.put_object(Bucket=bucket, Key="r", Body=b"C" * 5000)
    with src, pytest.raises(RemoteChanged):
        b"".join(src.chunks(10, 100))
    assert cache_files(store) == []
    src, attrs = store.open(bucket, "r")
    with src:
        assert b"".join(src.chunks(0, 5000)) == b"C" * 5000 and attrs.cksum_value == \
            hashlib.md5(b"C" * 5000).hexdigest()
