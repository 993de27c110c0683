import io
import os
import threading

import pytest

from getbatch.store import BadAppendHandle, Conflict, IncompleteUpload, ObjectNotFound
from getbatch.store import attrs as meta


def append(store, name, handle, data, bucket="b"):
    return store.append(bucket, name, handle, io.BytesIO(data), len(data))


def content(store, name):
    f, _ = store.open("b", name)
    with f:
        return f.read()


def sessions(store):
    return os.listdir(os.path.join(store.data_dir, ".sys", "append"))


def test_append_flush_round_trip(store):
    h = append(store, "w/o", "", b"abc")
    assert h and h == append(store, "w/o", h, b"def")
    assert append(store, "w/o", h, b"") == h
    with pytest.raises(ObjectNotFound):  # nothing is visible before the flush
        store.stat("b", "w/o")
    a = store.flush("b", "w/o", h)
    assert (a.size, a.name) == (6, "w/o")
    assert content(store, "w/o") == b"abcdef"
    assert sessions(store) == []
    if store._xattrs and meta.xxhash is not None:
        assert a.cksum_value == meta.xxhash.xxh64(b"abcdef").hexdigest()
        assert a.version == "1"
    with pytest.raises(BadAppendHandle):  # the session ended with the flush
        store.flush("b", "w/o", h)


def test_new_session_continues_existing_object(store):
    """As AIS: an empty handle starts from the object's content (SDK as_file("a"),
    and the SDK's flush-then-write pattern)."""
    store.put("b", "o", io.BytesIO(b"base-"), 5)
    h = append(store, "o", "", b"one")
    store.flush("b", "o", h)
    h = append(store, "o", "", b"-two")
    assert content(store, "o") == b"base-one"  # still the flushed state
    store.flush("b", "o", h)
    assert content(store, "o") == b"base-one-two"


def test_truncate_then_append_like_sdk_write_mode(store):
    store.put("b", "o", io.BytesIO(b"old content"), 11)
    store.put("b", "o", io.BytesIO(b""), 0)
    h = append(store, "o", "", b"new")
    store.flush("b", "o", h)
    assert content(store, "o") == b"new"


@pytest.mark.parametrize("handle", ["bogus", "../../etc/passwd", "0" * 32, "A" * 32, "0" * 31])
def test_unknown_or_malformed_handle(store, handle):
    with pytest.raises(BadAppendHandle) as ei:
        append(store, "o", handle, b"x")
    assert (ei.value.bucket, ei.value.name, ei.value.handle) == ("b", "o", handle)
    with pytest.raises(BadAppendHandle):
        store.flush("b", "o", handle)
    with pytest.raises(BadAppendHandle):
        store.flush("b", "o", "")
    with pytest.raises(BadAppendHandle):
        store.flush("b", "o", None)


def test_foreign_handle(store):
    store.create_bucket("c")
    h = append(store, "mine", "", b"x")
    with pytest.raises(BadAppendHandle):
        append(store, "other", h, b"y")
    with pytest.raises(BadAppendHandle):
        store.flush("c", "mine", h)
    assert store.flush("b", "mine", h).size == 1


def test_failed_append_keeps_session(store):
    h = append(store, "o", "", b"good")
    with pytest.raises(IncompleteUpload):
        store.append("b", "o", h, io.BytesIO(b"bad"), 10)
    append(store, "o", h, b"+more")
    store.flush("b", "o", h)
    assert content(store, "o") == b"good+more"


def test_failed_first_append_leaves_no_session(store):
    with pytest.raises(IncompleteUpload):
        store.append("b", "o", "", io.BytesIO(b"ab"), 5)
    assert sessions(store) == []


def test_flush_onto_directory_conflicts(store):
    store.put("b", "d/x", io.BytesIO(b"1"), 1)
    h = append(store, "d", "", b"data")
    with pytest.raises(Conflict):
        store.flush("b", "d", h)


def test_concurrent_appends_do_not_interleave(store):
    h = append(store, "o", "", b"")
    chunks = [bytes([97 + i]) * 50_000 for i in range(6)]

    def work(c):
        append(store, "o", h, c)

    threads = [threading.Thread(target=work, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.flush("b", "o", h).size == 300_000
    data = content(store, "o")
    # each chunk is contiguous, in some order
    assert sorted(data[i:i + 50_000] for i in range(0, 300_000, 50_000)) == chunks
