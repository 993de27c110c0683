"""Fuzzing the GetBatch request parser and the name rules (hypothesis).

Properties: any body either parses into a fully validated request or raises one of the
documented 4xx errors (never anything else, never a hang); an accepted request's names are
valid object names; every name the rules accept stays inside its bucket on disk.
"""
import io
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from getbatch.batch.errors import BadRequest
from getbatch.batch.request import parse
from getbatch.store import InvalidName, InvalidProvider, LocalStore, validate_object_name

DOCUMENTED = (BadRequest, InvalidName, InvalidProvider)
FAST = settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])

names = st.text(st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    ["a", "a/b", "../x", "./x", "a//b", "/abs", "~/x", "x/..", "日本/語", "a\r\nb", "a\x00b", ""])
scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | names
entry = st.fixed_dictionaries({}, optional={
    "objname": names | scalars, "bucket": names | scalars, "provider": st.sampled_from(
        ["ais", "s3", "aws", "gs", "bogus", "", 5]), "archpath": names | scalars,
    "start": st.integers(-5, 2**64) | scalars, "length": st.integers(-3, 2**64) | scalars,
    "opaque": st.text(max_size=12) | scalars, "uname": st.sampled_from(
        ["ais/@#/b/", "ais/b", "", "s3/@x#y/bk/"]) | scalars})
requests_ = st.fixed_dictionaries({}, optional={
    "in": st.lists(entry, max_size=8) | scalars, "mime": st.sampled_from(
        [".tar", "TGZ", "zip", "bogus", "", None, 3]), "coer": scalars, "onob": scalars,
    "strm": scalars})


def check(body):
    try:
        req = parse(body, "dflt", max_entries=20)
    except DOCUMENTED:
        return None
    assert req.mime in ("tar", "tgz", "tar.lz4", "zip")
    assert 0 < len(req.entries) <= 20
    for e in req.entries:
        assert validate_object_name(e.objname) == e.objname
        assert isinstance(e.bucket, str) and e.provider in ("ais", "aws", "gcp", "azure", "oci", "ht")
        assert e.start >= 0 and e.length >= -1
    return req


@FAST
@given(st.binary(max_size=300))
def test_arbitrary_bytes(body):
    check(body)


@FAST
@given(requests_, st.booleans())
def test_structured_requests(doc, wrap):
    if wrap:
        doc = {"action": "getbatch", "value": doc}
    check(json.dumps(doc).encode())


@FAST
@given(requests_, st.integers(0, 200), st.sampled_from([b"[", b"{", b'"', b"\\", b"\x00", b"\xff"]))
def test_mutated_requests(doc, pos, junk):
    body = json.dumps(doc).encode()
    pos = min(pos, len(body))
    check(body[:pos] + junk + body[pos:])
    check(body[:pos])


@pytest.mark.parametrize("depth", [10, 1000, 100_000])
def test_deep_nesting_is_a_bad_request(depth):
    for body in (b'{"in":' + b"[" * depth + b"]" * depth + b"}", b"{" * depth):
        with pytest.raises(BadRequest):
            parse(body, "b")


def test_entry_count_is_bounded_before_decoding():
    def body(n):
        return b'{"in":[' + b",".join([b'{"objname":"a"}'] * n) + b"]}"
    with pytest.raises(BadRequest, match="max_entries"):
        parse(body(100_001), "b", max_entries=100_000)
    assert len(parse(body(100_000), "b", max_entries=100_000).entries) == 100_000


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = LocalStore(tmp_path_factory.mktemp("names") / "data", fsync=False)
    s.create_bucket("b")
    return s


@FAST
@given(st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=60)
       | st.text(max_size=60))
def test_accepted_names_stay_in_their_bucket_and_round_trip(store, name):
    try:
        validate_object_name(name)
    except InvalidName as exc:
        assert exc.reason and "\n" not in str(exc) and str(exc).isprintable()
        return
    name.encode("utf-8")  # valid UTF-8: it can travel in listings and headers' JSON
    assert not any(ord(c) < 32 or ord(c) == 127 for c in name)
    try:
        path = store.object_path("b", name)
    except InvalidName as exc:
        assert "longer than" in exc.reason or "component longer" in exc.reason
        return
    bdir = os.path.join(store.data_dir, "ais", "b")
    assert os.path.normpath(path).startswith(bdir + os.sep)
    try:
        store.put("b", name, io.BytesIO(b"x"), 1)
    except Exception as exc:  # a name that collides with an earlier one's directory
        assert type(exc).__name__ == "Conflict", exc
        return
    assert name in [e.name for e in store.list_objects("b", prefix=name)[0]]
    store.delete("b", name)
