"""ht:// buckets end to end: a node reading through its cache from a local HTTP origin process
(Python's http.server: Last-Modified and sizes, no ETags, no ranges). The SDK 2.0.0 has no `ht`
provider (it refuses it client-side), so these go through requests, as curl users would."""
import os

import pytest
import requests

from ..remote_servers import start_http_origin
from tests.support.nodes import Node, serve_argv
from .test_moss import make_tar, moss, split_multipart, tar_members


@pytest.fixture(scope="module")
def origin(tmp_path_factory):
    root = tmp_path_factory.mktemp("origin")
    (root / "sub").mkdir()
    server = start_http_origin(root, str(tmp_path_factory.mktemp("origin-log")))
    yield root / "sub", server
    server.stop()


@pytest.fixture(scope="module")
def ht_node(origin, tmp_path_factory):
    d = tmp_path_factory.mktemp("ht-node")
    n = Node(d / "data", d / "server.log", serve_argv(workers=1, threads=4),
             env={"GETBATCH_HT_ORIGINS": f"web={origin[1].url}/sub"})
    yield n
    n.stop()


def write(path, data, mtime):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))


def get(node, name, **params):
    return requests.get(f"{node.url}/v1/objects/web/{name}", params=dict(provider="ht", **params))


def test_ht_objects_and_batches_through_the_cache(origin, ht_node):
    root, _ = origin
    members = [("x.wav", os.urandom(5000)), ("y.txt", b"why")]
    write(root / "a" / "one.bin", b"first version", 1_700_000_000)
    write(root / "s.tar", make_tar(members), 1_700_000_000)
    r = get(ht_node, "a/one.bin")
    assert r.status_code == 200 and r.content == b"first version"
    assert get(ht_node, "s.tar", archpath="x.wav").content == members[0][1]
    body = {"in": [{"objname": "a/one.bin"}, {"objname": "s.tar", "archpath": "y.txt"},
                   {"objname": "a/one.bin", "start": 6, "length": 7},
                   {"objname": "s.tar/x.wav"}], "strm": False}
    meta, arch = split_multipart(moss(ht_node.url, body, "/web?provider=ht"))
    assert [d for _, d in tar_members(arch)] == [b"first version", b"why", b"version",
                                                 members[0][1]]
    assert {o["provider"] for o in meta["out"]} == {"ht"}

    write(root / "a" / "one.bin", b"second version", 1_700_000_100)   # changed at the origin
    assert get(ht_node, "a/one.bin").content == b"second version"
    r = moss(ht_node.url, {"in": [{"objname": "a/one.bin"}], "strm": True}, "/web?provider=ht")
    assert tar_members(r.content) == [("web/a/one.bin", b"second version")]
    (root / "a" / "one.bin").unlink()
    r = get(ht_node, "a/one.bin")
    assert r.status_code == 404 and "ht://web/a/one.bin does not exist" in r.json()["message"]


def test_ht_buckets_are_read_only_and_configured(ht_node):
    r = requests.put(f"{ht_node.url}/v1/objects/web/new?provider=ht", data=b"x")
    assert r.status_code == 400 and "read-only" in r.json()["message"]
    r = moss(ht_node.url, {"in": [{"objname": "x"}]}, "/nope?provider=ht")
    assert r.status_code == 404 and r.json()["message"] == 'bucket "ht://nope" does not exist'
