import io
import os

import pytest

from getbatch.store import BucketNotFound, LocalStore
from getbatch.store.paging import MAX_PAGE


def put(store, name, data=b"x", bucket="b"):
    store.put(bucket, name, io.BytesIO(data), len(data))


def all_names(store, bucket="b", **kw):
    names, token = [], ""
    while True:
        entries, token = store.list_objects(bucket, token=token, **kw)
        names += [e.name for e in entries]
        if not token:
            return names


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """2,500 objects across nested directories (module-scoped: built once)."""
    s = LocalStore(tmp_path_factory.mktemp("big"), fsync=False)
    s.create_bucket("b")
    names = []
    for i in range(2500):
        names.append(f"shard-{i % 5}/{i % 3}/obj-{i:05d}" if i % 4 else f"top-{i:05d}.bin")
    for n in names:
        put(s, n, n.encode())
    return s, sorted(names)


def test_paging_over_2500(big):
    s, names = big
    entries, token = s.list_objects("b", page_size=1000)
    assert len(entries) == 1000 and token == entries[-1].name
    assert [e.name for e in entries] == names[:1000]
    assert all_names(s, page_size=1000) == names
    assert all_names(s, page_size=7) == names
    assert all_names(s) == names  # default page holds everything


def test_last_page_has_empty_token(big):
    s, names = big
    entries, token = s.list_objects("b", page_size=2500)
    assert len(entries) == 2500 and token == ""


def test_prefix_paging(big):
    s, names = big
    for prefix in ("shard-3/", "shard-3/1/obj-00", "top-", "shard-", "s", "nope", "shard-3/1/"):
        expect = [n for n in names if n.startswith(prefix)]
        assert all_names(s, prefix=prefix, page_size=100) == expect, prefix


def test_start_after(big):
    s, names = big
    after = names[1234]
    entries, _ = s.list_objects("b", start_after=after, page_size=10)
    assert [e.name for e in entries] == names[1235:1245]
    assert all_names(s, start_after="shard-2/2/", page_size=500) == [
        n for n in names if n > "shard-2/2/"]


def test_entry_fields(big):
    s, names = big
    entries, _ = s.list_objects("b", prefix=names[0], page_size=1)
    e = entries[0]
    assert (e.name, e.size, e.bucket) == (names[0], len(names[0]), "b")
    assert e.mtime_ns > 0
    assert e.version == ""  # not read without with_meta
    if s._xattrs:
        full, _ = s.list_objects("b", prefix=names[0], with_meta=True)
        assert full[0].version == "1" and full[0].cksum_value == s.stat("b", names[0]).cksum_value


def test_byte_order_across_directories(store):
    """`a-c` < `a/b` < `a0` byte-wise, although directory `a` sorts before file `a-c`."""
    names = ["a/b", "a-c", "a0", "a/bb", "A", "a.d/x", "é", "z", "~t"]
    for n in names:
        put(store, n)
    assert all_names(store) == sorted(names)
    assert all_names(store, page_size=1) == sorted(names)


def test_unicode_order_matches_utf8_bytes(store):
    names = ["\u00e9", "\uffff", "\U0001f600", "z", "\u0100"]
    for n in names:
        put(store, n)
    assert [n.encode() for n in all_names(store)] == sorted(n.encode() for n in names)


def test_page_size_capped(store):
    assert MAX_PAGE == 10_000
    put(store, "a")
    assert store.list_objects("b", page_size=10**9) == (store.list_objects("b")[0], "")


def test_empty_and_missing(store):
    assert store.list_objects("b") == ([], "")
    with pytest.raises(BucketNotFound):
        store.list_objects("nope")


def test_weird_prefixes_match_nothing(store):
    put(store, "a/b")
    for prefix in ("../", "/a", "a//", "./a", "a/../a/", "\0", "a/b/"):
        assert store.list_objects("b", prefix=prefix) == ([], ""), prefix


def test_temp_files_and_sessions_never_listed(store):
    put(store, "real")
    store.append("b", "pending", "", io.BytesIO(b"x"), 1)
    with pytest.raises(ZeroDivisionError):
        store.put("b", "broken", _Exploding(), 10)
    open(os.path.join(store.data_dir, ".sys", "tmp", "leftover"), "w").close()
    assert all_names(store) == ["real"]


class _Exploding:
    def read(self, n):
        raise ZeroDivisionError
