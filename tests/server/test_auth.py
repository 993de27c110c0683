"""Authentication end to end: a node with `auth` on, the real SDK and requests, and the CLI."""
import json
import os
import subprocess
import sys
import tarfile
import time

import pytest
import requests
from aistore.sdk.errors import AISError

from getbatch.auth.tokens import issue
from getbatch.config import Config
from getbatch.server import auth as server_auth
from getbatch.server.app import create_app
from getbatch.store import open_storage

from tests.support.nodes import Node, make_client, serve_argv
from tests.archive.tarhelp import make_tar as tar_bytes

KEY = b"0123456789abcdef0123456789abcdef-test-key"
CLI = [sys.executable, "-m", "getbatch.cli"]


def token(perms, ttl=600, sub="alice", key=KEY, now=None):
    return issue(key, sub, perms, ttl, now=now)


@pytest.fixture(scope="module")
def key_file(tmp_path_factory):
    f = tmp_path_factory.mktemp("key") / "auth.key"
    f.write_bytes(KEY + b"\n")
    return str(f)


@pytest.fixture(scope="module")
def anode(tmp_path_factory, key_file):
    d = tmp_path_factory.mktemp("authnode")
    n = Node(d / "data", d / "server.log", serve_argv(workers=1, threads=4),
             env={"GETBATCH_AUTH": "true", "GETBATCH_AUTH_KEY_FILE": key_file})
    yield n
    n.stop()


@pytest.fixture(scope="module")
def buckets(anode):
    """Two buckets, `pub` and `priv`, each with an object and a shard, made by an admin."""
    admin = make_client(anode.url, token=token({"*": "rwa"}, sub="admin"))
    for name in ("pub", "priv"):
        b = admin.bucket(name)
        b.create(exist_ok=True)
        b.object("a.bin").get_writer().put_content(f"{name}-a".encode())
        b.object("s.tar").get_writer().put_content(tar_bytes([("x.txt", f"{name}-x".encode())]))
    return admin


def status_of(call):
    with pytest.raises(AISError) as exc:
        call()
    return exc.value.status_code, exc.value.message


def test_health_is_open_and_everything_else_needs_a_token(anode):
    assert requests.get(anode.url + "/v1/health").status_code == 200
    for method, path in [("GET", "/v1/daemon?what=smap"), ("GET", "/v1/buckets"),
                         ("HEAD", "/v1/buckets/pub"), ("GET", "/v1/objects/pub/a.bin"),
                         ("PUT", "/v1/objects/pub/new"), ("GET", "/v1/ml/moss/pub"),
                         ("GET", "/v1/no/such/route")]:
        r = requests.request(method, anode.url + path)
        assert r.status_code == 401, (method, path, r.status_code)
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        if method != "HEAD":
            body = r.json()
            assert body["status"] == 401 and "bearer token" in body["message"]
            assert body["url_path"] == path.split("?")[0]


def test_sdk_without_a_token_gets_401(anode, buckets):
    c = make_client(anode.url, token="")
    assert status_of(lambda: c.bucket("pub").object("a.bin").get_reader().read_all())[0] == 401
    assert status_of(lambda: c.bucket("pub").head())[0] == 401
    assert status_of(lambda: c.bucket("pub").list_all_objects())[0] == 401
    assert status_of(lambda: list(c.batch(["a.bin"], bucket=c.bucket("pub")).get()))[0] == 401


def test_sdk_with_a_token_from_the_environment(anode, buckets, monkeypatch):
    monkeypatch.setenv("AIS_AUTHN_TOKEN", token({"pub": "r"}))
    c = make_client(anode.url)
    assert c.bucket("pub").object("a.bin").get_reader().read_all() == b"pub-a"
    got = [(i.obj_name, d) for i, d in c.batch(["a.bin", "s.tar/x.txt"],
                                                bucket=c.bucket("pub")).get()]
    assert got == [("a.bin", b"pub-a"), ("s.tar/x.txt", b"pub-x")]


@pytest.mark.parametrize("how", ["expired", "tampered", "wrong key", "alg none", "garbage"])
def test_unusable_tokens_get_401(anode, buckets, how):
    good = token({"pub": "r"})
    head, payload, sig = good.split(".")
    bad = {
        "expired": token({"pub": "r"}, ttl=60, now=time.time() - 120),
        # the payload of a token granting everything, under the signature of a read-only one
        "tampered": token({"*": "rwa"}, key=b"x" * 32).split(".")[0] + "." +
                    token({"*": "rwa"}).split(".")[1] + "." + sig,
        "wrong key": token({"pub": "r"}, key=b"another-key-of-at-least-32-bytes!"),
        "alg none": "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + payload + ".",
        "garbage": "not-a-token",
    }[how]
    c = make_client(anode.url, token=bad)
    status, message = status_of(lambda: c.bucket("pub").object("a.bin").get_reader().read_all())
    assert status == 401, message
    words = {"expired": "expired", "tampered": "bad signature", "wrong key": "bad signature",
             "alg none": "algorithm 'none'", "garbage": "malformed"}[how]
    assert words in message and bad not in message


def _signed(payload, key=KEY):
    """A token with `payload` (a dict, or raw bytes) signed by hand with `key`."""
    import base64
    import hashlib
    import hmac

    def b64(raw):
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("latin-1")
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signing_input = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(raw)
    return signing_input + "." + b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())


def _get_with(anode, tok):
    r = requests.get(f"{anode.url}/v1/objects/pub/a.bin",
                     headers={"Authorization": b"Bearer " + tok.encode("latin-1")}, timeout=10)
    return r.status_code, r.json()["message"] if r.status_code != 200 else r.content


def test_nbf_and_exp_with_leeway(anode, buckets):
    """`nbf` is honoured (a token not valid yet is a 401), and both `exp` and `nbf` are off by
    at most the leeway (auth_leeway, 30 s by default)."""
    now = int(time.time())
    claims = {"sub": "alice", "iat": now, "exp": now + 600, "perms": {"ais://pub": "r"}}
    status, message = _get_with(anode, _signed(dict(claims, nbf=now + 300)))
    assert status == 401 and "not valid before" in message and "alice" in message
    assert _get_with(anode, _signed(dict(claims, nbf=now + 10))) == (200, b"pub-a")
    assert _get_with(anode, _signed(dict(claims, exp=now - 10))) == (200, b"pub-a")
    assert _get_with(anode, _signed(dict(claims, exp=now - 120)))[0] == 401
    status, message = _get_with(anode, _signed(dict(claims, nbf="soon")))
    assert status == 401 and "nbf" in message


def test_a_non_ascii_token_is_a_401_not_a_500(anode, buckets):
    good = _signed({"sub": "alice", "exp": int(time.time()) + 600, "perms": {"ais://pub": "r"}})
    head, payload, sig = good.split(".")
    for bad in (f"{head}.{payload[:-1]}\xe9.{sig}", f"{head}\xff.{payload}.{sig}",
                _signed(b'{"sub":"\xc3\xa9","exp":9999999999,"perms":{"ais://pub":"r"}}')
                .replace("J", "\xe9", 1)):
        status, message = _get_with(anode, bad)
        assert status == 401 and "malformed" in message, (bad, message)


def test_read_only_token_cannot_write_or_administer(anode, buckets):
    c = make_client(anode.url, token=token({"pub": "r"}))
    b = c.bucket("pub")
    assert b.object("a.bin").get_reader().read_all() == b"pub-a"
    assert b.object("a.bin").head().size == 5
    assert [e.name for e in b.list_all_objects()] == ["a.bin", "s.tar"]
    status, message = status_of(lambda: b.object("new").get_writer().put_content(b"x"))
    assert status == 403 and "write permission" in message and "alice" in message
    assert status_of(lambda: b.object("a.bin").delete())[0] == 403
    assert status_of(lambda: b.delete())[0] == 403
    assert status_of(lambda: c.bucket("newbkt").create())[0] == 403
    # nothing changed
    assert buckets.bucket("pub").object("a.bin").get_reader().read_all() == b"pub-a"
    assert status_of(lambda: buckets.bucket("pub").object("new").head())[0] == 404


def test_write_and_admin_permissions(anode, buckets):
    w = make_client(anode.url, token=token({"pub": "w"}))
    w.bucket("pub").object("w.bin").get_writer().put_content(b"written")
    assert status_of(lambda: w.bucket("pub").object("w.bin").get_reader().read_all())[0] == 403
    w.bucket("pub").object("w.bin").delete()
    adm = make_client(anode.url, token=token({"tmp1": "a"}))
    adm.bucket("tmp1").create()
    assert status_of(lambda: adm.bucket("tmp2").create())[0] == 403
    adm.bucket("tmp1").delete()
    assert "tmp1" not in [b.name for b in buckets.cluster().list_buckets()]


def test_bucket_scoped_token_cannot_read_another_bucket(anode, buckets):
    c = make_client(anode.url, token=token({"pub": "rw"}))
    status, message = status_of(lambda: c.bucket("priv").object("a.bin").get_reader().read_all())
    assert status == 403 and "ais://priv" in message
    assert status_of(lambda: c.bucket("priv").list_all_objects())[0] == 403
    assert status_of(lambda: c.bucket("priv").object("a.bin").head())[0] == 403
    # a missing bucket is a 403 too: a token without permission learns nothing about it
    assert status_of(lambda: c.bucket("nosuch").object("a").get_reader().read_all())[0] == 403
    assert [b.name for b in c.cluster().list_buckets()] == ["pub"]
    assert sorted(b.name for b in buckets.cluster().list_buckets()) == ["priv", "pub"]
    # another provider's bucket of the same name is another bucket
    assert status_of(lambda: c.bucket("pub", provider="aws").head())[0] == 403


@pytest.mark.parametrize("strm", [True, False])
def test_getbatch_naming_a_forbidden_bucket_is_403_before_any_byte(anode, buckets, strm):
    tok = token({"pub": "r"})
    c = make_client(anode.url, token=tok)
    batch = c.batch(bucket=c.bucket("pub"), streaming_get=strm)
    batch.add("a.bin")
    batch.add("a.bin", bck="priv", provider="ais")
    status, message = status_of(lambda: list(batch.get()))
    assert status == 403 and "ais://priv" in message
    # on the wire: a JSON error, never a status line followed by archive bytes
    body = {"in": [{"objname": "a.bin"}, {"objname": "s.tar", "archpath": "x.txt"},
                   {"objname": "a.bin", "bucket": "priv"}], "strm": strm}
    r = requests.get(anode.url + "/v1/ml/moss/pub", json=body,
                     headers={"Authorization": "Bearer " + tok})
    assert r.status_code == 403 and r.headers["Content-Type"] == "application/json"
    assert json.loads(r.content)["status"] == 403
    # the path bucket itself, and entries' uname
    r = requests.get(anode.url + "/v1/ml/moss/priv", json={"in": [{"objname": "a.bin"}]},
                     headers={"Authorization": "Bearer " + tok})
    assert r.status_code == 403
    r = requests.get(anode.url + "/v1/ml/moss", json={"in": [
        {"objname": "a.bin", "bucket": "pub"}, {"objname": "a.bin", "uname": "ais/@#/priv/"}]},
        headers={"Authorization": "Bearer " + tok})
    assert r.status_code == 403 and "ais://priv" in r.json()["message"]


def test_getbatch_over_two_readable_buckets(anode, buckets):
    c = make_client(anode.url, token=token({"pub": "r", "priv": "r"}))
    batch = c.batch(bucket=c.bucket("pub"), streaming_get=False)
    batch.add("a.bin")
    batch.add("s.tar", archpath="x.txt", bck="priv", provider="ais")
    assert [d for _, d in batch.get()] == [b"pub-a", b"priv-x"]
    star = make_client(anode.url, token=token({"*": "r"}))
    assert [d for _, d in star.batch(["a.bin"], bucket=star.bucket("priv")).get()] == [b"priv-a"]


def test_cluster_map_needs_a_token_but_no_bucket_permission(anode):
    r = requests.get(anode.url + "/v1/daemon?what=smap",
                     headers={"Authorization": "Bearer " + token({})})
    assert r.status_code == 200 and "proxy_si" in r.json()
    assert make_client(anode.url, token=token({})).cluster().is_ready()


def test_token_issue_cli_round_trip(anode, buckets, key_file):
    r = subprocess.run(CLI + ["token", "issue", "--user", "carol", "--bucket", "pub:r",
                              "--bucket", "pub:w", "--ttl", "5m"],
                       env=dict(os.environ, GETBATCH_AUTH_KEY_FILE=key_file),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    tok = r.stdout.strip()
    assert len(r.stdout.splitlines()) == 1 and "carol" in r.stderr and "ais://pub:rw" in r.stderr
    c = make_client(anode.url, token=tok)
    c.bucket("pub").object("carol.bin").get_writer().put_content(b"by carol")
    assert c.bucket("pub").object("carol.bin").get_reader().read_all() == b"by carol"
    status, message = status_of(lambda: c.bucket("priv").object("a.bin").get_reader().read_all())
    assert status == 403 and "'carol'" in message
    c.bucket("pub").object("carol.bin").delete()


@pytest.mark.parametrize("args,env,words", [
    (["serve", "--auth"], {}, "no token signing key"),
    (["serve", "--auth", "--auth-key", "short"], {}, "at least 32"),
    (["serve"], {"GETBATCH_AUTH": "1", "GETBATCH_AUTH_KEY_FILE": "/nonexistent/k"}, "cannot read"),
    (["token", "issue", "--user", "u"], {}, "no token signing key"),
    (["token", "issue", "--user", "u", "--auth-key", "k" * 32, "--bucket", "x"], {}, "NAME:PERMS"),
    (["token", "issue", "--user", "u", "--auth-key", "k" * 32, "--ttl", "0"], {}, "lifetime"),
])
def test_refusals_are_one_line(tmp_path, args, env, words):
    full = {k: v for k, v in os.environ.items() if not k.startswith("GETBATCH_AUTH")}
    full.update(env, GETBATCH_DATA_DIR=str(tmp_path / "d"))
    r = subprocess.run(CLI + args, env=full, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and r.stdout == "", r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and words in r.stderr, r.stderr
    assert not (tmp_path / "d").exists()


def test_config_show_never_prints_the_key(tmp_path):
    r = subprocess.run(CLI + ["config", "show"], capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, GETBATCH_AUTH_KEY="s3cret-" * 6))
    assert r.returncode == 0 and "s3cret" not in r.stdout and "(set)" in r.stdout


def test_every_route_has_a_permission_rule(tmp_path):
    """The table in server/auth.py covers every responder the app serves."""
    config = Config(dict(data_dir=str(tmp_path / "d"), auth=True, auth_key="k" * 32))
    app = create_app(config, open_storage(config))
    served, stack = set(), list(app._router._roots)
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        if node.resource is None:
            continue
        for method, responder in node.method_map.items():
            if getattr(responder, "__self__", None) is node.resource:
                served.add((node.uri_template, method))
    cluster_only = {("/v1/rebalance", "GET"), ("/v1/rebalance", "POST"),
                    ("/v1/rebalance", "DELETE")}
    open_routes = {(path, "GET") for path in server_auth.OPEN_PATHS}
    assert served == set(server_auth.ROUTES) - cluster_only | open_routes


def test_a_token_used_before_still_expires(anode, buckets):
    """The node keeps verified tokens between requests; their expiry still counts (with the
    default leeway of 30 s: this token's exp is 25 s ago, so it is valid for 5 s more, room
    for two reads on a busy machine)."""
    c = make_client(anode.url, token=token({"pub": "r"}, ttl=2, now=time.time() - 27))
    deadline = time.time() + 5
    assert c.bucket("pub").object("a.bin").get_reader().read_all() == b"pub-a"
    assert c.bucket("pub").object("a.bin").get_reader().read_all() == b"pub-a"
    time.sleep(max(0.0, deadline - time.time()) + 0.2)
    status, message = status_of(lambda: c.bucket("pub").object("a.bin").get_reader().read_all())
    assert status == 401 and "expired" in message


def _jobs_api(anode, tok, method, path, body=None, **params):
    r = requests.request(method, anode.url + path, json=body, params=params, timeout=30,
                         headers={"Authorization": f"Bearer {tok}"})
    return r.status_code, (r.json() if r.headers.get("Content-Type", "").startswith(
        "application/json") else r.text)


def test_jobs_stay_within_their_buckets(anode, buckets):
    """Two tokens, each admin of one bucket: each sees and stops its own bucket's jobs only;
    another bucket's job answers exactly as a job that does not exist."""
    alice, bob = token({"pub": "rwa"}, sub="alice"), token({"priv": "rwa"}, sub="bob")
    ids = {}
    for who, tok, bucket in (("alice", alice, "pub"), ("bob", bob, "priv")):
        status, job_id = _jobs_api(anode, tok, "DELETE", f"/v1/buckets/{bucket}",
                                   {"action": "delete-listrange",
                                    "value": {"template": "gone-{0..3}"}})
        assert status == 200, job_id
        ids[who] = job_id
        # a GetBatch of the bucket, and one naming its bucket per entry (no path bucket)
        r = requests.get(f"{anode.url}/v1/ml/moss/{bucket}", json={"in": [{"objname": "a.bin"}]},
                         headers={"Authorization": f"Bearer {tok}"}, timeout=30)
        assert r.status_code == 200, r.text
        r = requests.get(f"{anode.url}/v1/ml/moss", headers={"Authorization": f"Bearer {tok}"},
                         json={"in": [{"objname": "a.bin", "bucket": bucket}]}, timeout=30)
        assert r.status_code == 200, r.text
    for who, tok, mine, theirs in (("alice", alice, "pub", "priv"), ("bob", bob, "priv", "pub")):
        other = ids["bob" if who == "alice" else "alice"]
        status, snaps = _jobs_api(anode, tok, "GET", "/v1/cluster", {}, what="qryxstats")
        assert status == 200
        listed = [s["id"] for node in snaps.values() for s in node]
        assert ids[who] in listed and other not in listed
        missing = _jobs_api(anode, tok, "GET", "/v1/cluster", {"ID": "nosuchjob1"}, what="status")
        for method, path, body, params in (
                ("GET", "/v1/cluster", {"ID": other}, {"what": "status"}),
                ("GET", "/v1/cluster", {"ID": other}, {"what": "qryxstats"}),
                ("PUT", "/v1/cluster", {"action": "stop", "value": {"ID": other}}, {})):
            status, answer = _jobs_api(anode, tok, method, path, body, **params)
            assert status == 404 == missing[0]
            assert answer["message"].replace(other, "X") == \
                missing[1]["message"].replace("nosuchjob1", "X")
        assert _jobs_api(anode, tok, "GET", "/v1/cluster", {"ID": ids[who]}, what="status")[0] == 200
        status, answer = _jobs_api(anode, tok, "GET", "/v1/jobs", all="true")
        assert status == 200
        seen = [(j["bucket"], j["user"]) for j in answer["jobs"]]
        assert (mine, who) in seen and ("", who) in seen
        assert all(b in (mine, "") for b, _ in seen) and all(u == who for b, u in seen if not b)
    # an admin of every bucket sees them all
    status, answer = _jobs_api(anode, token({"*": "rwa"}, sub="root"), "GET", "/v1/jobs", all="true")
    assert {"pub", "priv"} <= {j["bucket"] for j in answer["jobs"]}
    # a GetBatch job of bob's bucket is no more alice's to see or stop than his other jobs
    bobs = next(j["id"] for j in answer["jobs"] if j["bucket"] == "priv")
    for method, body, params in (("GET", {"ID": bobs}, {"what": "status"}),
                                 ("PUT", {"action": "stop", "value": {"ID": bobs}}, {})):
        status, answer = _jobs_api(anode, alice, method, "/v1/cluster", body, **params)
        assert status == 404 and "does not exist" in answer["message"]
    assert _jobs_api(anode, bob, "GET", "/v1/cluster", {"ID": bobs}, what="status")[0] == 200


def test_cli_commands_send_the_token(anode, buckets, tmp_path):
    """`getbatch get` and `getbatch show job` take --token, else $AIS_AUTHN_TOKEN."""
    tok = token({"pub": "r"})
    env = {k: v for k, v in os.environ.items() if k != "AIS_AUTHN_TOKEN"}

    def cli(*args, **extra):
        return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=60,
                              cwd=tmp_path, env=dict(env, **extra))

    r = cli("get", "--url", anode.url, "pub/a.bin", "-o", "none.tar")
    assert r.returncode == 1 and "401" in r.stderr and not (tmp_path / "none.tar").exists()
    r = cli("get", "--url", anode.url, "--token", tok, "pub/a.bin", "-o", "flag.tar")
    assert r.returncode == 0, r.stderr
    r = cli("get", "--url", anode.url, "pub/a.bin", "-o", "env.tar", AIS_AUTHN_TOKEN=tok)
    assert r.returncode == 0, r.stderr
    for name in ("flag.tar", "env.tar"):
        with tarfile.open(tmp_path / name) as tf:
            assert tf.extractfile("pub/a.bin").read() == b"pub-a"
    assert cli("show", "job", "--url", anode.url, "--all").returncode == 1
    r = cli("show", "job", "--url", anode.url, "--all", "--json", "--token", tok)
    assert r.returncode == 0, r.stderr
    assert all(j["bucket"] in ("pub", "") for j in json.loads(r.stdout)["jobs"])
    r = cli("show", "job", "--url", anode.url, "--json", AIS_AUTHN_TOKEN=tok)
    assert r.returncode == 0, r.stderr


def test_epoch_plans_need_read_on_their_bucket(anode, buckets):
    """Creating a plan needs READ on its bucket; a plan of a bucket the token may not read is
    neither listed nor shown (a 404, as a missing one), and its steps are a 403."""
    admin = {"Authorization": "Bearer " + token({"*": "rwa"}, sub="admin")}
    pub = {"Authorization": "Bearer " + token({"pub": "r"})}
    spec = {"bucket": "priv", "shards": {"names": ["s.tar"]}, "batch_size": 1}
    assert requests.post(anode.url + "/v1/ml/epochs", json=spec).status_code == 401
    assert requests.post(anode.url + "/v1/ml/epochs", json=spec, headers=pub).status_code == 403
    r = requests.post(anode.url + "/v1/ml/epochs", json=spec, headers=admin)
    assert r.status_code == 200, r.text
    pid = r.json()["id"]
    mine = requests.post(anode.url + "/v1/ml/epochs", headers=pub,
                         json=dict(spec, bucket="pub")).json()["id"]
    listed = requests.get(anode.url + "/v1/ml/epochs", headers=pub).json()["plans"]
    assert [p["id"] for p in listed] == [mine]
    r = requests.get(f"{anode.url}/v1/ml/epochs/{pid}", headers=pub)
    assert r.status_code == 404 and "does not exist" in r.text
    assert requests.get(f"{anode.url}/v1/ml/epochs/{pid}", headers=admin).status_code == 200
    step = {"plan": pid, "epoch": 0, "rank": 0, "step": 0, "strm": True}
    assert requests.get(anode.url + "/v1/ml/moss", json=step, headers=pub).status_code == 403
    r = requests.get(anode.url + "/v1/ml/moss", json=dict(step, plan=mine), headers=pub)
    assert r.status_code == 200 and b"pub-x" in r.content
    assert requests.delete(f"{anode.url}/v1/ml/epochs/{mine}", headers=pub).status_code == 403
