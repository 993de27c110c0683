"""GetBatch request validation: every bad request is a 4xx with an AIS body, before any data.
In process (the node's app through falcon.testing); tests/server/test_moss.py has the SDK's
batches against a real node."""
import pytest

from tests.support.apps import create_bucket


def moss(app, body, path="", **params):
    if isinstance(body, (bytes, str)):
        return app.simulate_get(f"/v1/ml/moss{path}", params=params, body=body)
    return app.simulate_get(f"/v1/ml/moss{path}", params=params, json=body)


@pytest.fixture(scope="module")
def bname(app_node):
    create_bucket(app_node, "v")
    for name, data in (("o1", b"data-1"), ("empty", b""), ("plain", b"hello world")):
        assert app_node.simulate_put(f"/v1/objects/v/{name}", body=data).status_code == 200
    return "v"


@pytest.mark.parametrize("body,text", [
    (b"", "empty input"), ({}, "empty input"), ({"in": []}, "empty input"),
    (b"{not json", "malformed JSON"),
    ({"in": [{"objname": ""}]}, "invalid object name"),
    ({"in": [{"objname": "dir/"}]}, "invalid object name"),
    ({"in": [{"objname": "a/../b"}]}, "invalid object name"),
    ({"in": [{"objname": "./a"}]}, "invalid object name"),
    ({"in": [{"objname": "~/a"}]}, "invalid object name"),
    ({"in": [{"objname": "o1", "archpath": "dir/"}]}, "invalid archpath"),
    ({"in": [{"objname": "o1", "archpath": "a/../b"}]}, "invalid archpath"),
    ({"in": [{"objname": "o1", "start": -1, "length": 10}]}, "not satisfiable range"),
    ({"in": [{"objname": "o1", "length": -2}]}, "not satisfiable range"),
    ({"in": [{"objname": "o1", "start": 5}]}, "not satisfiable range"),
    ({"in": [{"objname": "o1"}], "mime": "foo"}, 'unknown mime type "foo"'),
    ({"in": [{"objname": "o1", "provider": "foo"}]}, "invalid bucket provider"),
    ({"in": [{"objname": "o1", "opaque": "***"}]}, "opaque"),
])
def test_bad_requests_are_400(app_node, bname, body, text):
    r = moss(app_node, body, f"/{bname}")
    assert r.status_code == 400, r.text
    assert text in r.json["message"]
    assert r.headers["Content-Type"] == "application/json"


def test_method_and_url(app_node, bname):
    r = app_node.simulate_post(f"/v1/ml/moss/{bname}", json={"in": [{"objname": "o1"}]})
    assert r.status_code == 405 and "GET" in r.headers["Allow"]
    r = moss(app_node, {"in": [{"objname": "o1"}]}, f"/{bname}/extra")
    assert r.status_code == 400


@pytest.mark.parametrize("coloc,ok", [("3", False), ("x", False), ("0", True), ("1", True), ("2", True)])
def test_coloc(app_node, bname, coloc, ok):
    r = moss(app_node, {"in": [{"objname": "o1"}], "strm": True}, f"/{bname}", coloc=coloc)
    assert (r.status_code == 200) == ok, r.text


def test_missing_buckets(app_node, bname):
    r = moss(app_node, {"in": [{"objname": "o1"}]}, "/nope-bucket")
    assert r.status_code == 404 and "does not exist" in r.text
    r = moss(app_node, {"in": [{"objname": "o1", "bucket": "nope-bucket"}]}, f"/{bname}")
    assert r.status_code == 404 and 'bucket "ais://nope-bucket" does not exist' in r.json["message"]
    r = moss(app_node, {"in": [{"objname": "o1"}]})
    assert r.status_code == 400 and "missing bucket specification" in r.text


def test_ranges_out_of_bounds_are_416(app_node, bname):
    for entry in ({"objname": "o1", "start": 6, "length": -1}, {"objname": "o1", "start": 2, "length": 10},
                  {"objname": "empty", "start": 0, "length": -1}):
        for strm in (True, False):
            r = moss(app_node, {"in": [entry], "strm": strm}, f"/{bname}")
            assert r.status_code == 416 and "not satisfiable range" in r.text, (entry, r.text)


def test_case_insensitive_keys_and_mime(app_node, bname):
    r = moss(app_node, {"In": [{"ObjName": "o1"}], "Mime": "TAR", "STRM": True}, f"/{bname}")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/x-tar"


def test_action_wrapper(app_node, bname):
    r = moss(app_node, {"action": "getbatch", "value": {"in": [{"objname": "o1"}], "strm": True}}, f"/{bname}")
    assert r.status_code == 200 and b"data-1" in r.content


def test_strict_missing_object_is_404_in_both_modes(app_node, bname):
    for strm in (True, False):
        r = moss(app_node, {"in": [{"objname": "o1"}, {"objname": "gone"}], "strm": strm, "coer": False},
                 f"/{bname}")
        assert r.status_code == 404 and f"ais://{bname}/gone does not exist" in r.text


def test_soft_error_limit(app_node, bname):
    ins = [{"objname": f"gone{i}"} for i in range(8)] + [{"objname": "o1"}]
    r = moss(app_node, {"in": ins, "coer": True}, f"/{bname}")
    assert r.status_code == 200
    ins = [{"objname": f"gone{i}"} for i in range(9)] + [{"objname": "o1"}]
    r = moss(app_node, {"in": ins, "coer": True}, f"/{bname}")
    assert r.status_code == 400 and "exceeded soft-errors limit" in r.text


def test_not_an_archive_is_400(app_node, bname):
    r = moss(app_node, {"in": [{"objname": "plain", "archpath": "x"}], "coer": True}, f"/{bname}")
    assert r.status_code == 400 and "plain" in r.text


@pytest.mark.parametrize("mime,ctype", [
    ("tar", "application/x-tar"), (".tar", "application/x-tar"), ("application/x-tar", "application/x-tar"),
    ("tgz", "application/gzip"), (".tar.gz", "application/gzip"), ("application/gzip", "application/gzip"),
    ("zip", "application/zip"), ("application/zip", "application/zip"), (".tar.lz4", "application/x-lz4"),
    (".TGZ", "application/gzip"), ("", "application/x-tar")])
def test_mime_variants(app_node, bname, mime, ctype):
    r = moss(app_node, {"in": [{"objname": "o1"}], "mime": mime, "strm": True}, f"/{bname}")
    assert r.status_code == 200 and r.headers["Content-Type"] == ctype
