"""Membership with a real etcd and real nodes: the map the SDK reads, stable ids, nodes that
die, pause, restart and join, and the intra-cluster guard."""
import http.client
import os
from urllib.parse import urlsplit

import requests

from getbatch.cluster.peers import PEER_PREFIX, SECRET_HEADER

from .nodes import LEASE_TTL


def test_smap_lists_every_node(cluster, clients):
    ids = cluster.wait_members(3)
    assert sorted(n.id for n in cluster.nodes) == ids
    smap = clients[1].cluster().get_info()
    assert sorted(smap.tmap) == ids
    urls = {i: s.public_net.direct_url for i, s in smap.tmap.items()}
    assert urls == {n.id: n.url for n in cluster.nodes}
    assert smap.proxy_si.daemon_id == cluster.nodes[1].id
    assert clients[2].cluster().is_ready()


def test_peer_endpoints_need_the_secret(cluster):
    url = cluster.urls[0] + PEER_PREFIX + "/ping"
    for headers in ({}, {SECRET_HEADER: "wrong"}):
        r = requests.get(url, headers=headers, timeout=5)
        assert r.status_code == 403 and "intra-cluster" in r.json()["message"]
    # an object write to a node's own share, bypassing the cluster: refused, nothing stored
    r = requests.put(cluster.urls[0] + PEER_PREFIX + "/objects/sneak/x", data=b"x", timeout=5)
    assert r.status_code == 403
    assert not os.path.exists(os.path.join(cluster.nodes[0].data_dir, "ais", "sneak"))
    # unknown paths under the prefix too: the guard comes before routing
    assert requests.get(cluster.urls[0] + PEER_PREFIX + "/nothing", timeout=5).status_code == 403
    # one secret, made by the first node, used by all
    secret = cluster.secret()
    assert len(secret) >= 32
    for n in cluster.nodes:
        r = requests.get(n.url + PEER_PREFIX + "/ping", headers={SECRET_HEADER: secret}, timeout=5)
        assert r.status_code == 200 and r.json()["id"] == n.id


def test_peer_guard_sees_the_path_the_router_routes(cluster, clients):
    """Extra leading slashes once reached the peer routes without the secret (the router
    ignores them, the guard did not): a destroy-bck through one deleted a node's objects."""
    clients[0].bucket("edge").create()
    clients[0].bucket("edge").object("keep").get_writer().put_content(b"kept")
    u = urlsplit(cluster.urls[0])
    for method, path, body in (("GET", "//v1/_peer/ping", None),
                               ("GET", "///v1/_peer/buckets/edge", None),
                               ("POST", "//v1/_peer/batch", b'{"in":[{"objname":"keep"}]}'),
                               ("DELETE", "//v1/_peer/buckets/edge", b'{"action":"destroy-bck"}')):
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
        conn.request(method, path, body=body)
        r = conn.getresponse()
        answer = r.read()
        conn.close()
        assert r.status == 400 and b"canonical" in answer, (method, path, r.status, answer)
    for c in clients:
        assert c.bucket("edge").object("keep").get_reader().read_all() == b"kept"


def test_kill_pause_restart_join(make_cluster):
    c = make_cluster(3)
    ids = c.wait_members(3)
    c.kill(2)
    left = c.wait_members(2, timeout=LEASE_TTL * 3)
    assert c.nodes[2].id not in left
    c.pause(1)
    assert c.wait_members(1, timeout=LEASE_TTL * 3) == [c.nodes[0].id]
    c.resume(1)  # its lease expired meanwhile: it registers again
    c.wait_members(2)
    c.restart(2)  # same data dir: same id
    assert c.wait_members(3) == ids
    new = c.add()
    assert new.id not in ids and new.id in c.wait_members(4)
    c.stop(3)  # a graceful stop leaves at once (lease revoked)
    assert c.wait_members(3, timeout=LEASE_TTL - 1) == ids


def test_etcd_away_keeps_the_last_map(make_cluster):
    c = make_cluster(2)
    ids = c.wait_members(2)
    c.etcd.stop()
    for n in c.nodes:
        assert sorted(c.smap(n.url)["tmap"]) == ids
    c.etcd.start()
    assert c.wait_members(2) == ids
