import re

import pytest

from getbatch.store import (BadAppendHandle, BucketExists, BucketNotFound, Conflict,
                            IncompleteUpload, InvalidName, ObjectNotFound, StoreError)

# The AIS SDK's classifier: `ais://<bck>` then `/` means an object, anything else a bucket.
SDK_RE = re.compile(r"(ais|aws|azure|gcp|oci|gs|s3)://([A-Za-z0-9@#._-]{1,132})(.)?")


def test_bucket_not_found():
    e = BucketNotFound("bk1")
    assert str(e) == 'bucket "ais://bk1" does not exist'
    assert (e.bucket, e.name) == ("bk1", None)
    assert SDK_RE.search(str(e)).group(3) != "/"


def test_bucket_exists():
    e = BucketExists("bk1")
    assert str(e) == 'bucket "ais://bk1" already exists'
    assert e.bucket == "bk1"
    assert SDK_RE.search(str(e)).group(3) != "/"


def test_object_not_found():
    e = ObjectNotFound("bk1", "dir/a b.txt")
    assert str(e) == "ais://bk1/dir/a b.txt does not exist"
    assert (e.bucket, e.name) == ("bk1", "dir/a b.txt")
    assert SDK_RE.search(str(e)).group(3) == "/"


def test_invalid_name():
    e = InvalidName("object name", "a/../b", 'path component ".." not allowed')
    assert str(e) == 'invalid object name "a/../b": path component ".." not allowed'
    assert (e.what, e.name) == ("object name", "a/../b")
    assert isinstance(e, ValueError)


def test_object_scoped_messages_never_read_as_bucket_errors(tmp_path):
    """A 409 whose body has `ais://<b>` not followed by `/` is ErrBckAlreadyExists to the
    SDK (swallowed by create(exist_ok=True)): store messages about objects must not."""
    for e in (Conflict("cannot store ais://b/a/b: x"), BadAppendHandle("b", "o", "h"),
              IncompleteUpload("b", "o", 2, 1)):
        assert SDK_RE.search(str(e)).group(3) == "/"


def test_conflict_and_append_handle_and_incomplete():
    c = Conflict("boom", "b", "a/b")
    assert str(c) == "boom" and (c.bucket, c.name) == ("b", "a/b")
    h = BadAppendHandle("b", "o", "zz")
    assert str(h).startswith('invalid append handle "zz" for ais://b/o')
    assert h.handle == "zz"
    i = IncompleteUpload("b", "o", 10, 4)
    assert str(i) == "ais://b/o: upload incomplete, received 4 of 10 bytes"


@pytest.mark.parametrize("cls", [BucketNotFound, BucketExists, ObjectNotFound, InvalidName,
                                 Conflict, BadAppendHandle, IncompleteUpload])
def test_all_are_store_errors(cls):
    assert issubclass(cls, StoreError)
