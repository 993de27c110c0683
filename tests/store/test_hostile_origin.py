"""A remote store that lies (tests/hostile_origin.py) is not believed: wrong ranges, a
version swapped between HEAD and GET, malformed or broken bodies and redirects each end in a
clear error naming the origin, and nothing of the lie is served or cached. The same origin
answers as an ht:// origin and as a path-style S3 endpoint, so both clients are held to it."""
import os

import pytest

from getbatch.store.errors import RemoteBadAnswer, RemoteChanged, RemoteUnavailable
from getbatch.store.http import HttpClient, _internal
from getbatch.store.remote import RemoteStore
from getbatch.store.s3 import S3Client

from ..hostile_origin import HostileOrigin, Obj

DATA = os.urandom(16384)


@pytest.fixture(scope="module")
def origin():
    o = HostileOrigin()
    yield o
    o.stop()


@pytest.fixture(params=["ht", "aws"])
def store(request, origin, tmp_path, monkeypatch):
    if request.param == "ht":
        client = HttpClient({"web": f"{origin.url}/web"})
    else:
        for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
            monkeypatch.setenv(k, v)
        client = S3Client(origin.url, "us-east-1", path_style=True)
    return RemoteStore(client, tmp_path / "data", cache_bytes=4 << 20)


def put(origin, name, **kw):
    origin.objects[f"/web/{name}"] = Obj(DATA, **kw)
    return name


def test_an_honest_range_is_served(origin, store):
    name = put(origin, "honest")
    src, _ = store.open("web", name)
    assert b"".join(src.chunks(1000, 10)) == DATA[1000:1010]


def test_an_origin_without_etags_is_read_pinned_by_last_modified_and_size(origin, store):
    name = put(origin, "no-etag", etag="")     # it fails any If-Match: none may be sent
    src, _ = store.open("web", name)
    assert b"".join(src.chunks(1000, 10)) == DATA[1000:1010]
    assert b"".join(src.chunks(0, len(DATA))) == DATA


def test_a_range_the_origin_ignores_is_cut_from_the_whole_answer(origin, store):
    name = put(origin, "no-ranges", lie="no_ranges")
    src, _ = store.open("web", name)
    if store.provider == "aws":       # S3 always honours Range: a 200 instead is a lie
        with pytest.raises(RemoteBadAnswer):
            b"".join(src.chunks(1000, 10))
        return
    for off, n in ((1000, 10), (16000, 384), (0, 1)):
        assert b"".join(src.chunks(off, n)) == DATA[off:off + n]


def test_a_206_of_another_range_is_a_bad_answer(origin, store):
    name = put(origin, "wrong-range", lie="wrong_range")
    src, _ = store.open("web", name)
    with pytest.raises(RemoteBadAnswer) as ei:
        b"".join(src.chunks(1000, 10))
    assert "asked for bytes 1000-1009" in str(ei.value) and origin.url in str(ei.value)
    with pytest.raises(RemoteBadAnswer):
        store.fetch_range("web", name, '"v1"', 1000, 10)


def test_a_version_swapped_under_a_read_is_refused_not_mislabelled(origin, store):
    name = put(origin, "swap", lie="swap")
    src, attrs = store.open("web", name)
    assert attrs.cksum_value == "" and store.stat("web", name).size == len(DATA)
    with pytest.raises(RemoteChanged):
        b"".join(src.chunks(0, len(DATA)))      # the whole object, labelled v1
    with pytest.raises(RemoteChanged):
        b"".join(src.chunks(100, 10))           # a range of it
    assert os.listdir(store.cache.dir) == [] or not any(
        n.endswith(".object") for n in os.listdir(store.cache.dir))
    copy = store.local_copy("web", name)        # unpinned: the delivering answer labels it
    assert b"".join(copy.chunks(0, copy.size)) == DATA[::-1]


def test_a_malformed_content_length_is_a_bad_answer(origin, store):
    name = put(origin, "bad-length", lie="bad_length")
    with pytest.raises(RemoteBadAnswer) as ei:
        store.stat("web", name)
    assert "abc" in str(ei.value)


def test_a_body_cut_short_is_a_bad_answer_and_nothing_is_kept(origin, store):
    name = put(origin, "short", lie="short")
    with pytest.raises(RemoteUnavailable) as ei:  # 502 from ht://, 503 (a broken read) from S3
        store.local_copy("web", name)
    assert origin.url in str(ei.value)
    assert not any(n.endswith(".object") for n in os.listdir(store.cache.dir))


def test_redirects_are_not_followed_by_default(origin, tmp_path):
    origin.objects["/web/secret"] = Obj(b"internal only")
    name = put(origin, "moved", lie="redirect", location=f"{origin.url}/web/secret")
    store = RemoteStore(HttpClient({"web": f"{origin.url}/web"}), tmp_path / "d", cache_bytes=0)
    before = origin.hits.get("/web/secret", 0)
    with pytest.raises(RemoteBadAnswer) as ei:
        store.local_copy("web", name)
    assert "ht_redirects=0" in str(ei.value)
    assert origin.hits.get("/web/secret", 0) == before
    # allowed, an origin on loopback may redirect within loopback
    store = RemoteStore(HttpClient({"web": f"{origin.url}/web"}, redirects=2), tmp_path / "e",
                        cache_bytes=0)
    copy = store.local_copy("web", name)
    assert b"".join(copy.chunks(0, copy.size)) == b"internal only"


def test_a_public_origin_may_not_redirect_inward(monkeypatch):
    client = HttpClient({"web": "http://198.51.100.7/web"}, redirects=3)  # never contacted
    monkeypatch.setattr("getbatch.store.http._internal", lambda host: host not in ("198.51.100.7", "203.0.113.9"))
    for target in ("http://127.0.0.1:9/x", "http://169.254.169.254/latest/meta-data",
                   "http://10.0.0.8/x", "file:///etc/passwd"):
        with pytest.raises(RemoteBadAnswer) as ei:
            client._redirect_target("web", "x", "http://198.51.100.7/web/x", target, 0)
        assert "refused" in str(ei.value) or "not an http(s) URL" in str(ei.value)
    assert client._redirect_target("web", "x", "http://198.51.100.7/web/x",
                                   "http://203.0.113.9/y", 0) == "http://203.0.113.9/y"


@pytest.mark.parametrize("host,internal", [("127.0.0.1", True), ("::1", True),
                                           ("169.254.169.254", True), ("10.1.2.3", True),
                                           ("192.168.0.1", True), ("::ffff:127.0.0.1", True),
                                           ("8.8.8.8", False)])
def test_internal_addresses(host, internal):
    assert _internal(host) is internal


def test_origin_credentials_go_to_the_origin_only_and_are_never_shown(origin, tmp_path):
    origin.objects["/web/gone"] = Obj(b"", lie="redirect", location="http://127.0.0.1:9/x")
    client = HttpClient({"web": f"http://svc:s3cr%40t@{origin.url[7:]}/web"})
    assert "s3cr" not in client.where("web")
    store = RemoteStore(client, tmp_path / "d", cache_bytes=0)
    put(origin, "auth")
    origin.headers_seen.clear()
    store.local_copy("web", "auth").close()
    assert origin.headers_seen[-1]["Authorization"] == "Basic c3ZjOnMzY3JAdA=="
    with pytest.raises(RemoteBadAnswer) as ei:
        store.local_copy("web", "gone")
    assert "s3cr" not in str(ei.value) and "svc" not in str(ei.value)
