"""A node in front of a lying origin (tests/hostile_origin.py), as ht:// and as aws://: wrong
ranges, swapped versions, malformed and broken bodies and redirects are 502/409 answers naming
the origin, never a 500 or wrong bytes; origin credentials show nowhere (config API, `config
show`, error messages, the log)."""
import os
import subprocess
import sys

import pytest
import requests

from ..hostile_origin import HostileOrigin, Obj
from tests.support.nodes import Node, serve_argv
from .test_moss import moss

DATA = os.urandom(16384)
PASSWORD = "pa55-w0rd"


@pytest.fixture(scope="module")
def origin():
    o = HostileOrigin()
    for b in ("web", "s3b"):
        o.objects[f"/{b}/honest"] = Obj(DATA)
        o.objects[f"/{b}/wrong-range"] = Obj(DATA, lie="wrong_range")
        o.objects[f"/{b}/swap"] = Obj(DATA, lie="swap")
        o.objects[f"/{b}/bad-length"] = Obj(DATA, lie="bad_length")
        o.objects[f"/{b}/short"] = Obj(DATA, lie="short")
    o.objects["/web/internal"] = Obj(b"internal only")
    o.objects["/web/moved"] = Obj(b"", lie="redirect", location=f"{o.url}/web/internal")
    yield o
    o.stop()


@pytest.fixture(scope="module")
def node(origin, tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile-origin-node")
    host = origin.url[len("http://"):]
    env = {"GETBATCH_HT_ORIGINS": f"web=http://svc:{PASSWORD}@{host}/web,"
                                  f"down=http://svc:{PASSWORD}@127.0.0.1:9/x",
           "AWS_ENDPOINT_URL": origin.url, "GETBATCH_S3_PATH_STYLE": "true",
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1"}
    n = Node(d / "data", d / "server.log", serve_argv(workers=1, threads=4), env=env)
    n.env = env
    yield n
    n.stop()


BUCKETS = [("web", "ht"), ("s3b", "aws")]


def get(node, bucket, provider, name, **kw):
    return requests.get(f"{node.url}/v1/objects/{bucket}/{name}", params={"provider": provider},
                        **kw)


@pytest.mark.parametrize("bucket,provider", BUCKETS)
def test_a_range_the_origin_answers_with_other_bytes_is_a_502(node, origin, bucket, provider):
    r = get(node, bucket, provider, "honest", headers={"Range": "bytes=1000-1009"})
    assert r.status_code == 206 and r.content == DATA[1000:1010]
    r = get(node, bucket, provider, "wrong-range", headers={"Range": "bytes=1000-1009"})
    assert r.status_code == 502, r.text
    assert "asked for bytes 1000-1009" in r.json()["message"] and origin.url in r.text
    r = moss(node.url, {"in": [{"objname": "wrong-range", "start": 1000, "length": 10}]},
             f"/{bucket}?provider={provider}")
    assert r.status_code == 502, r.text


@pytest.mark.parametrize("bucket,provider", BUCKETS)
def test_an_object_replaced_under_a_read_is_a_409_not_mislabelled(node, bucket, provider):
    r = get(node, bucket, provider, "swap")
    assert r.status_code == 409, (r.status_code, r.headers)
    assert "changed while being read" in r.json()["message"]
    r = get(node, bucket, provider, "swap", headers={"Range": "bytes=0-99"})
    assert r.status_code == 409


@pytest.mark.parametrize("bucket,provider", BUCKETS)
@pytest.mark.parametrize("name", ["bad-length", "short"])
def test_malformed_and_broken_answers_are_502_or_503_naming_the_origin(node, origin, bucket,
                                                                       provider, name):
    r = get(node, bucket, provider, name)
    assert r.status_code in (502, 503), (r.status_code, r.text)
    assert origin.url in r.json()["message"]
    r = moss(node.url, {"in": [{"objname": name}]}, f"/{bucket}?provider={provider}")
    assert r.status_code in (502, 503), (r.status_code, r.text)


def test_redirects_are_refused_and_the_internal_url_never_fetched(node, origin):
    before = origin.hits.get("/web/internal", 0)
    r = get(node, "web", "ht", "moved")
    assert r.status_code == 502 and "ht_redirects=0" in r.json()["message"]
    r = moss(node.url, {"in": [{"objname": "moved"}]}, "/web?provider=ht")
    assert r.status_code == 502 and b"internal only" not in r.content
    assert origin.hits.get("/web/internal", 0) == before


def test_origin_credentials_show_nowhere(node):
    r = requests.get(f"{node.url}/v1/config")
    assert r.status_code == 200 and "svc:***@" in r.text and PASSWORD not in r.text
    r = get(node, "down", "ht", "x")
    assert r.status_code == 503 and PASSWORD not in r.text and "127.0.0.1:9" in r.text
    out = subprocess.run([sys.executable, "-m", "getbatch.cli", "config", "show"],
                         env=dict(os.environ, **node.env), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "svc:***@" in out.stdout, out.stderr
    assert PASSWORD not in out.stdout + out.stderr
    assert PASSWORD not in node.log()
