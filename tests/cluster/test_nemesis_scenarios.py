"""Issue 15's defects replayed end to end on a real 3-node cluster, each through the nemesis's
faults and judged by the checker (what every node answers, what each holder keeps):

1. an overwrite made while the object's first owner was away is lost when it returns;
2. a GetBatch 200 whose large item is half one version, half another (failover mid-item);
3. PUTs acknowledged with one copy while etcd is paused past the lease;
4. objects deleted while a holder was away come back with it;
5. racing PUTs leave copies at different versions; a bucket destroyed while a node is paused
   keeps that node's files; a node started with a live node's advertise URL joins twice.

Each scenario uses its own bucket and leaves the cluster whole (all nodes back, one map)."""
import threading
import time

import pytest
import requests

from getbatch.cluster.peers import SECRET_HEADER
from getbatch.cluster.smap import NodeInfo, Smap
from tests.support.nodes import Node, make_client, serve_argv

from .checker import ABSENT, FEW_COPIES, RESURRECTED, Checker, Op, Violation
from .nemesis import Nemesis, create_bucket, final_violations, holder_states, rebalance
from .nodes import LEASE_TTL, Cluster
from .workload import Client, History, Versions


@pytest.fixture(scope="module")
def cc(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("consistency"), n=3,
                env={"GETBATCH_MAX_WAIT": "2s", "GETBATCH_MAX_SOFT_ERRS": "100"})
    c.nemesis = Nemesis(c, [])
    yield c
    c.close()


@pytest.fixture
def nem(cc):
    yield cc.nemesis
    cc.nemesis.heal()


def _client(bucket):
    return Client(bucket, Versions(), History(), timeout=(3, 30))


def _owners(cc, bucket, name, copies):
    live = [cc.nodes[i] for i in cc.nemesis.members()]
    smap = Smap(1, [NodeInfo(n.id, n.url) for n in live], "")
    return [next(i for i in range(len(cc.nodes)) if cc.nodes[i].id == n.id)
            for n in smap.owners("ais", bucket, name, copies)]


def _holders(cc):
    """(id, url) of each member, for holder_states."""
    return [(cc.nodes[i].id, cc.nodes[i].url) for i in cc.nemesis.members()]


def _first_owned_by(cc, bucket, i, count):
    """`count` names whose first HRW owner is node i."""
    out, k = [], 0
    while len(out) < count:
        name = f"o{k:03d}"
        if _owners(cc, bucket, name, 1) == [i]:
            out.append(name)
        k += 1
    return out


def _verdict(cc, client, names, copies, extra=()):
    """Heal, read every name through every node (one GetBatch of them all, then GETs: a GET
    repairs the copies it compares, a batch first sees them as they are), rebalance, then
    read every name through every node and every holder: the violations of the whole
    history, as text ("" if none)."""
    cc.nemesis.heal()
    members = cc.nemesis.members()
    for i in members:
        client.batch(cc.nodes[i].url, names)
    for i in members:
        for name in names:
            client.get(cc.nodes[i].url, name)
    checker = Checker(client.history.ops)
    found = list(extra) + checker.check_reads()
    rebalance(cc.urls[members[0]])
    found += final_violations(cc, members, client, checker, names, copies)
    if not found:
        return ""
    return "\n".join(map(str, found)) + f"\n(client errors: {client.errors})"


def _until(cond, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.2)
    return False


def _size_held(url, bucket, name, secret):
    """The size of the copy `url` holds itself (None if none)."""
    r = requests.head(f"{url}/v1/_peer/objects/{bucket}/{name}", params={"provider": "ais"},
                      headers={SECRET_HEADER: secret}, timeout=10)
    return int(r.headers["Content-Length"]) if r.status_code == 200 else None


def _acked(write, attempts=5):
    """Run `write` until acknowledged, as a client retries a 503 (a node under load may
    briefly hold back writes); each attempt is in the history."""
    for _ in range(attempts):
        ok = write()
        if ok is not None:
            return ok
        time.sleep(0.5)
    return None


def _put_all(client, url, names, vid, size=4096):
    for n in names:
        assert _acked(lambda: client.put(url, n, vid, size)) is True, client.errors


def test_overwrite_while_the_owner_restarts_is_kept(cc, nem):
    create_bucket(cc.urls[0], "s1", 2)
    client = _client("s1")
    names = _first_owned_by(cc, "s1", 1, 4)
    _put_all(client, cc.urls[0], names, "v0")
    nem.begin("restart", 1)     # a clean SIGTERM: it leaves the map at once
    nem.settle()
    _put_all(client, cc.urls[2], names, "v1")
    nem.end("restart", 1)
    nem.settle()
    assert _verdict(cc, client, names, 2) == ""


def test_failover_inside_an_item_never_mixes_versions(cc, nem):
    create_bucket(cc.urls[0], "s2", 2)
    client = _client("s2")
    name, size = "big", 16 << 20
    assert client.put(cc.urls[0], name, "v0", size) is True, client.errors
    first, second = _owners(cc, "s2", name, 2)
    dt = next(i for i in range(3) if i not in (first, second))
    # the second copy at another version, as a lost overwrite or a race leaves it
    stale = client.versions.new(name, "v1", size)
    r = requests.put(f"{cc.nodes[second].url}/v1/_peer/objects/s2/{name}", data=stale,
                     params={"provider": "ais"}, timeout=60,
                     headers={SECRET_HEADER: cc.secret()})
    assert r.status_code == 200, r.text
    client.history.add(Op("put", name, client.history.now(), client.history.now(), None, "v1",
                          via=f"copy on node {second}"))
    # a batch through a non-owner: the first owner stalls past max_wait in mid-item
    client.batch(cc.nodes[dt].url, [name], midway=(4 << 20, lambda: nem.begin("pause", first)))
    nem.end("pause", first)
    found = Checker(client.history.ops).check_reads()
    assert found == [], "\n".join(map(str, found))


def test_no_put_is_acknowledged_with_fewer_copies_while_etcd_is_paused(cc, nem):
    create_bucket(cc.urls[0], "s3", 2)
    client = _client("s3")
    secret = cc.secret()
    holders = _holders(cc)
    few, acked = [], []
    stop = threading.Event()

    def writer():
        k = 0
        while not stop.is_set():
            name = f"e{k:03d}"
            url = cc.urls[k % 3]
            k += 1
            if client.put(url, name, "v0", 2048) is True:
                acked.append(name)
                held = holder_states(secret, holders, "s3", name, client.versions)
                if sum(s is not ABSENT for s in held.values()) < 2:
                    few.append(Violation(FEW_COPIES, name, f"acknowledged by {url} with "
                                                           f"copies {held}"))
    t = threading.Thread(target=writer)
    t.start()
    try:
        nem.begin("etcd_pause")
        stop.wait(2 * LEASE_TTL)
        nem.end("etcd_pause")
        stop.wait(3)   # the maps shrink when etcd comes back and expires the leases
    finally:
        stop.set()
        t.join()
    assert len(acked) >= 3, client.errors
    assert _verdict(cc, client, acked, 2, extra=few) == ""


def test_a_delete_made_while_a_holder_was_killed_stays_deleted(cc, nem):
    create_bucket(cc.urls[0], "s4", 2)
    client = _client("s4")
    names = _first_owned_by(cc, "s4", 2, 6)
    _put_all(client, cc.urls[0], names, "v0")
    nem.begin("kill", 2)
    nem.settle()
    for n in names:
        assert _acked(lambda: client.delete(cc.urls[1], n)) is True, client.errors
    nem.end("kill", 2)
    nem.settle()
    listed = {e.name for e in make_client(cc.urls[2]).bucket("s4").list_all_objects()}
    back = [Violation(RESURRECTED, n, "listed again") for n in sorted(listed & set(names))]
    assert _verdict(cc, client, names, 2, extra=back) == ""


def test_racing_puts_converge_on_every_copy(cc, nem):
    create_bucket(cc.urls[0], "s5", 2)
    client = _client("s5")
    secret = cc.secret()
    names = [f"r{k}" for k in range(3)]
    for name in names:
        first, second = _owners(cc, "s5", name, 2)
        other = next(i for i in range(3) if i not in (first, second))
        # a big PUT through a non-owner; a small one of the same name lands on the first
        # owner while the big one is still being copied to the second
        big = threading.Thread(target=client.put, args=(cc.urls[other], name, "big", 16 << 20))
        big.start()
        assert _until(lambda: _size_held(cc.urls[first], "s5", name, secret) == 16 << 20, 30)
        client.put(cc.urls[first], name, "small", 4096)
        big.join()
    assert _verdict(cc, client, names, 2) == ""


def test_a_bucket_destroyed_while_a_node_is_paused_is_gone_from_it(cc, nem):
    create_bucket(cc.urls[0], "s6", 2)
    client = _client("s6")
    names = _first_owned_by(cc, "s6", 1, 4)
    _put_all(client, cc.urls[0], names, "v0")
    nem.begin("pause", 1)
    nem.settle()
    start = client.history.now()
    make_client(cc.urls[0]).bucket("s6").delete()
    for n in names:  # the bucket's destruction deletes every object in it
        client.history.add(Op("delete", n, start, client.history.now(), True, via="destroy"))
    nem.end("pause", 1)
    nem.settle()
    create_bucket(cc.urls[2], "s6", 2)   # the same name again: empty
    listed = {e.name for e in make_client(cc.urls[1]).bucket("s6").list_all_objects()}
    back = [Violation(RESURRECTED, n, "listed in the new bucket") for n in sorted(listed)]
    assert _verdict(cc, client, names, 2, extra=back) == ""


def test_a_node_advertising_a_live_url_is_refused(cc, nem, tmp_path):
    taken = cc.nodes[0].url
    dup = Node(tmp_path / "data", tmp_path / "server.log",
               serve_argv(1, 2) + ["--etcd", cc.etcd.url, "--advertise", taken], wait=False)
    try:
        # refused (it exits), or listed in the map: whichever comes first
        _until(lambda: dup.proc.poll() is not None or len(cc.smap(cc.urls[1])["tmap"]) > 3,
               30)
        create_bucket(cc.urls[1], "s7", 2)
        client = _client("s7")
        acked = [n for n in (f"d{k}" for k in range(6)) if client.put(cc.urls[1], n, "v0", 2048)]
        # copies on distinct machines: ask each process for its own copy, the duplicate too
        holders = _holders(cc)
        if dup.proc.poll() is None:
            holders.append(("duplicate", dup.url))
        found = []
        for n in acked:
            held = holder_states(cc.secret(), holders, "s7", n, client.versions)
            if sum(v is not ABSENT for v in held.values()) < 2:
                found.append(Violation(FEW_COPIES, n, f"acknowledged with copies {held}"))
        listed = [u["public_net"]["direct_url"] for u in cc.smap(cc.urls[1])["tmap"].values()]
        assert sorted(listed) == sorted(cc.urls), f"the map lists {listed}"
        assert found == [], "\n".join(map(str, found))
        assert dup.proc.poll() not in (None, 0), "the duplicate is still running"
        assert taken in dup.log(), dup.log()[-2000:]
    finally:
        if dup.proc.poll() is None:
            dup.stop()

