"""Authentication on a cluster: etcd and 3 real nodes with `auth` on and the same key, driven
by the SDK and requests through every node. Whatever node a request lands on, it is answered
as one node would: reads of objects and archived files held elsewhere are forwarded (never
redirected: `requests` drops Authorization on a redirect to another host or port), listings
(shards expanded too) merged, GetBatch assembled; refusals are the same on every node, and the
intra-cluster routes want the cluster secret, not a token."""
import io
import os
import tarfile

import pytest
import requests
from aistore.sdk.enums import Colocation
from aistore.sdk.errors import AISError
from aistore.sdk.list_object_flag import ListObjectFlag

from getbatch.auth.tokens import issue
from getbatch.cluster.peers import SECRET_HEADER
from getbatch.cluster.smap import NodeInfo, Smap

from tests.support.nodes import make_client

from .nodes import Cluster
from .test_objects import _local_names
from tests.archive.tarhelp import make_tar as _tar

KEY = "0123456789abcdef0123456789abcdef-cluster-key"
ADMIN = issue(KEY.encode(), "admin", {"*": "rwa"}, 3600)
USER = issue(KEY.encode(), "alice", {"sec": "rw"}, 3600)
MEMBERS = [("a.txt", b"alpha"), ("d/b.bin", b"beta" * 3000), ("d/e/c.txt", b"gamma")]
OBJECTS = {f"o/{i:02}": os.urandom(100 + 37 * i) for i in range(24)}


def _members(shard):
    """A shard's files: each shard has its own bytes, so a file from the wrong shard shows."""
    return [(n, shard.encode() + b":" + d) for n, d in MEMBERS]


@pytest.fixture(scope="module")
def acluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("acluster"), n=3, token=ADMIN,
                env={"GETBATCH_AUTH": "true", "GETBATCH_AUTH_KEY": KEY})
    admin = make_client(c.urls[0], token=ADMIN)
    for name in ("sec", "hidden"):
        admin.bucket(name).create()
    hidden = make_client(c.urls[1], token=ADMIN).bucket("hidden")
    hidden.object("h").get_writer().put_content(b"secret")
    yield c
    c.close()


def _spread_shards(acluster, per_node=3):
    """Shard names that put `per_node` shards on each node (HRW placement is by node id,
    which is random: fixed names could leave a node without any)."""
    smap = Smap(1, [NodeInfo(n.id, n.url) for n in acluster.nodes], acluster.nodes[0].id)
    names, counts = [], {n.id: 0 for n in acluster.nodes}
    i = 0
    while min(counts.values()) < per_node:
        name, i = f"s{i:02}.tar", i + 1
        owner = smap.owner("ais", "sec", name).id
        if counts[owner] < per_node:
            counts[owner] += 1
            names.append(name)
    return sorted(names)


class Filled:
    def __init__(self, shards, held):
        self.shards = shards
        self.held = held   # per node, the names it stores itself


@pytest.fixture(scope="module")
def filled(acluster):
    """`sec` filled by alice through the nodes in turn: objects and shards on every node."""
    for i, (name, data) in enumerate(OBJECTS.items()):
        make_client(acluster.urls[i % 3], token=USER).bucket("sec").object(name) \
            .get_writer().put_content(data)
    shards = _spread_shards(acluster)
    for i, s in enumerate(shards):
        make_client(acluster.urls[i % 3], token=USER).bucket("sec").object(s) \
            .get_writer().put_content(_tar(_members(s)))
    held = [_local_names(n, "sec") for n in acluster.nodes]
    assert all(len(set(shards) & h) == 3 for h in held)
    return Filled(shards, held)


def _elsewhere(acluster, filled, name):
    """The URL of a node that does not hold `name`."""
    return next(n.url for n, h in zip(acluster.nodes, filled.held) if name not in h)


def _status(call):
    with pytest.raises(AISError) as exc:
        call()
    return exc.value.status_code


def test_objects_through_any_node(acluster, filled):
    for url in acluster.urls:
        b = make_client(url, token=USER).bucket("sec")
        for name, data in OBJECTS.items():
            assert b.object(name).get_reader().read_all() == data
            assert b.object(name).head().size == len(data)
        assert b.object("o/03").get_reader(byte_range="bytes=5-9").read_all() == \
            OBJECTS["o/03"][5:10]
    # alice deletes, through a node that does not hold it
    name = "o/07"
    url = _elsewhere(acluster, filled, name)
    make_client(url, token=USER).bucket("sec").object(name).delete()
    for u in acluster.urls:
        assert _status(make_client(u, token=USER).bucket("sec").object(name)
                       .get_reader().read_all) == 404
    make_client(url, token=USER).bucket("sec").object(name).get_writer() \
        .put_content(OBJECTS[name])


def test_archived_files_of_shards_held_elsewhere(acluster, filled):
    from aistore.sdk.archive_config import ArchiveConfig
    for s in filled.shards:
        url = _elsewhere(acluster, filled, s)
        b = make_client(url, token=USER).bucket("sec")
        for path, data in _members(s):
            # archpath, and the shard.tar/file name, GET and HEAD: forwarded, not redirected
            got = b.object(s).get_reader(archive_config=ArchiveConfig(archpath=path)).read_all()
            assert got == data
            assert b.object(f"{s}/{path}").get_reader().read_all() == data
            assert b.object(f"{s}/{path}").head().size == len(data)
        r = requests.get(f"{url}/v1/objects/sec/{s}", params={"archpath": "d/b.bin"},
                         headers={"Authorization": f"Bearer {USER}"}, allow_redirects=False,
                         timeout=30)
        assert r.status_code == 200 and r.content == _members(s)[1][1]
        assert int(r.headers["Content-Length"]) == len(r.content)
    # the errors are those of a single node, with the shard's name
    s = filled.shards[0]
    url = _elsewhere(acluster, filled, s)
    auth = {"Authorization": f"Bearer {USER}"}
    r = requests.get(f"{url}/v1/objects/sec/{s}", params={"archpath": "nope.txt"}, headers=auth,
                     timeout=30)
    assert r.status_code == 404
    assert r.json()["message"] == f"nope.txt in ais://sec/{s} does not exist"
    r = requests.get(f"{url}/v1/objects/sec/{s}", params={"archpath": "a.txt"},
                     headers=dict(auth, Range="bytes=0-1"), timeout=30)
    assert r.status_code == 416
    r = requests.get(f"{url}/v1/objects/sec/o/00", params={"archpath": "a.txt"}, headers=auth,
                     timeout=30)
    assert r.status_code == 400 and "o/00" in r.json()["message"]
    r = requests.head(f"{url}/v1/objects/sec/{s}/nope.txt", headers=auth, timeout=30)
    assert r.status_code == 404


def _expected_expanded(names_sizes):
    """The listing a single node gives: objects by name, each shard followed by its files."""
    out = []
    for name, size in sorted(names_sizes.items()):
        out.append((name, size))
        if name.endswith(".tar"):
            out += sorted((f"{name}/{p}", len(d)) for p, d in _members(name))
    return out


def test_listing_with_shards_expanded_through_any_node(acluster, filled):
    objects = dict({n: len(d) for n, d in OBJECTS.items()},
                   **{s: len(_tar(_members(s))) for s in filled.shards})
    want = _expected_expanded(objects)
    for url in acluster.urls:
        b = make_client(url, token=USER).bucket("sec")
        assert sorted(e.name for e in b.list_all_objects()) == sorted(objects)
        # 3: pages end on a shard, inside one, between nodes' entries
        for page_size in (0, 3):
            got = b.list_all_objects(flags=[ListObjectFlag.ARCH_DIR], page_size=page_size)
            assert [(e.name, e.size) for e in got] == want
        for s in (filled.shards[0], filled.shards[4]):
            files = b.list_archive(s)
            assert [(e.name, e.size) for e in files] == \
                sorted((f"{s}/{p}", len(d)) for p, d in _members(s))
        s = filled.shards[2]
        got = b.list_all_objects(prefix=f"{s}/d/", flags=[ListObjectFlag.ARCH_DIR], page_size=1)
        assert [e.name for e in got] == [f"{s}/d/b.bin", f"{s}/d/e/c.txt"]


def test_listing_mirrored_shards_lists_each_file_once(acluster, filled):
    admin = make_client(acluster.urls[0], token=ADMIN)
    b = admin.bucket("mir")
    b.create()
    r = requests.patch(f"{acluster.urls[0]}/v1/buckets/mir", params={"provider": "ais"},
                       headers={"Authorization": f"Bearer {ADMIN}"},
                       json={"action": "set-bprops",
                             "value": {"mirror": {"enabled": True, "copies": 2}}}, timeout=10)
    assert r.status_code == 200, r.text
    for s in filled.shards[:4]:
        b.object(s).get_writer().put_content(_tar(_members(s)))
    assert sum(len(_local_names(n, "mir")) for n in acluster.nodes) == 8
    want = _expected_expanded({s: len(_tar(_members(s))) for s in filled.shards[:4]})
    for url in acluster.urls:
        got = make_client(url, token=ADMIN).bucket("mir").list_all_objects(
            flags=[ListObjectFlag.ARCH_DIR], page_size=3)
        assert [(e.name, e.size) for e in got] == want


def test_getbatch_with_entries_on_every_node_and_coloc(acluster, filled):
    names = list(OBJECTS)
    want = [OBJECTS[n] for n in names] + [_members(s)[2][1] for s in filled.shards]
    smap = Smap(1, [NodeInfo(n.id, n.url) for n in acluster.nodes], acluster.nodes[0].id)
    assert len({smap.owner("ais", "sec", n).id for n in names}) == 3
    for url in acluster.urls:
        for coloc in (Colocation.NONE, Colocation.TARGET_AWARE):
            for strm in (True, False):
                c = make_client(url, token=USER)
                batch = c.batch(bucket=c.bucket("sec"), streaming_get=strm, colocation=coloc)
                for n in names:
                    batch.add(n)
                for s in filled.shards:
                    batch.add(s, archpath="d/e/c.txt")
                assert [d for _, d in batch.get()] == want
    # with auth on, coloc is served where it lands: a 307 would reach the owner without the
    # token (requests drops Authorization on a redirect to another host or port)
    for url in acluster.urls:
        r = requests.get(f"{url}/v1/ml/moss/sec", params={"coloc": "1"}, allow_redirects=False,
                         headers={"Authorization": f"Bearer {USER}"}, timeout=60,
                         json={"in": [{"objname": n} for n in names], "strm": True})
        assert r.status_code == 200, r.text
        with tarfile.open(fileobj=io.BytesIO(r.content)) as tf:
            assert [tf.extractfile(m).read() for m in tf.getmembers()] == \
                [OBJECTS[n] for n in names]


def test_refusals_are_the_same_on_every_node(acluster, filled):
    for url in acluster.urls:
        user = make_client(url, token=USER)
        assert _status(user.bucket("hidden").object("h").get_reader().read_all) == 403
        assert _status(user.bucket("hidden").list_all_objects) == 403
        assert _status(lambda: user.bucket("hidden").object("x").get_writer()
                       .put_content(b"x")) == 403
        batch = user.batch(bucket=user.bucket("sec"))
        batch.add("o/00")
        batch.add(user.bucket("hidden").object("h"))
        assert _status(lambda: list(batch.get())) == 403
        nobody = make_client(url, token="")
        assert _status(nobody.bucket("sec").object("o/00").get_reader().read_all) == 401
        assert _status(nobody.bucket("sec").list_all_objects) == 401
        r = requests.get(f"{url}/v1/objects/sec/{filled.shards[0]}",
                         params={"archpath": "a.txt"}, timeout=10)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")


def test_peer_routes_want_the_secret_not_a_token(acluster, filled):
    auth = {"Authorization": f"Bearer {ADMIN}"}
    secret = acluster.secret()
    for url in acluster.urls:
        for method, path in (("GET", "/v1/_peer/ping"), ("GET", "/v1/_peer/objects/sec/o/00"),
                             ("PUT", "/v1/_peer/objects/sec/evil"),
                             ("GET", "/v1/_peer/buckets/sec")):
            for headers in (auth, dict(auth, **{SECRET_HEADER: "wrong"})):
                r = requests.request(method, url + path, headers=headers, data=b"x", timeout=10)
                assert r.status_code == 403, (method, path, r.text)
                assert "intra-cluster" in r.json()["message"]
        # the secret alone is what a peer sends
        r = requests.get(url + "/v1/_peer/ping", headers={SECRET_HEADER: secret}, timeout=10)
        assert r.status_code == 200
    for n in acluster.nodes:
        assert "evil" not in _local_names(n, "sec")


def test_rebalance_needs_a_cluster_admin(acluster, filled):
    """It moves every node's data (at any rate): a token for one bucket, even with admin
    permission on it, may watch it but not start it."""
    url = acluster.urls[1]
    for tok in (USER, issue(KEY.encode(), "bucketadmin", {"sec": "rwa"}, 3600)):
        r = requests.post(f"{url}/v1/rebalance", params={"rate": 0}, timeout=30,
                          headers={"Authorization": f"Bearer {tok}"})
        assert r.status_code == 403 and "*:a" in r.json()["message"], r.text
        r = requests.get(f"{url}/v1/rebalance", timeout=30, headers={"Authorization": f"Bearer {tok}"})
        assert r.status_code == 200
    r = requests.post(f"{url}/v1/rebalance", timeout=30, headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 200 and len(r.json()["nodes"]) == 3


def test_cli_rebalance_sends_the_token(acluster, filled):
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "AIS_AUTHN_TOKEN"}
    cmd = [sys.executable, "-m", "getbatch.cli", "rebalance", "--url", acluster.urls[0]]
    r = subprocess.run(cmd + ["--no-wait"], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode != 0 and "401" in r.stderr
    r = subprocess.run(cmd + ["--no-wait", "--token", USER], capture_output=True, text=True,
                       timeout=60, env=env)
    assert r.returncode != 0 and "403" in r.stderr
    r = subprocess.run(cmd + ["--rate", "0"], capture_output=True, text=True, timeout=120,
                       env=dict(env, AIS_AUTHN_TOKEN=ADMIN))
    assert r.returncode == 0, r.stderr
    assert "rebalance done" in r.stdout


def test_cluster_job_lists_keep_to_the_token(acluster, filled):
    """GET /v1/jobs?all=true&cluster=true merges every node's jobs: a token for `sec` sees
    its own bucket's batches from every node and none of `hidden`'s."""
    def moss(url, tok, bucket, names):
        r = requests.get(f"{url}/v1/ml/moss/{bucket}", json={"in": [{"objname": n} for n in names]},
                         headers={"Authorization": f"Bearer {tok}"}, timeout=30)
        assert r.status_code == 200, r.text
    for url in acluster.urls:
        moss(url, ADMIN, "hidden", ["h"])
        moss(url, USER, "sec", ["o/00"])

    def listed(url, tok):
        r = requests.get(f"{url}/v1/jobs", params={"all": "true", "cluster": "true"},
                         headers={"Authorization": f"Bearer {tok}"}, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()["jobs"]
    for url in acluster.urls:
        mine = listed(url, USER)
        assert {j["bucket"] for j in mine} == {"sec"}
        assert len({j["node"] for j in mine}) == 3
        assert "hidden" in {j["bucket"] for j in listed(url, ADMIN)}
