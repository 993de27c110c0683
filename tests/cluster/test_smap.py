"""HRW placement: even spread, minimal movement on membership change, stable replica order."""
from collections import Counter

from getbatch.cluster import NodeInfo, Smap


def _smap(ids, self_id="a"):
    return Smap(len(ids), [NodeInfo(i, f"http://127.0.0.1:{5000 + n}") for n, i in enumerate(ids)],
                self_id)


def test_spread_is_even():
    s = _smap("abc")
    counts = Counter(s.owner("ais", "b", f"obj-{i}").id for i in range(30000))
    assert set(counts) == {"a", "b", "c"}
    assert all(9000 < c < 11000 for c in counts.values()), counts


def test_join_moves_only_what_the_new_node_wins():
    before, after = _smap("abc"), _smap("abcd")
    for i in range(5000):
        old, new = before.owner("ais", "b", f"o{i}").id, after.owner("ais", "b", f"o{i}").id
        assert new == old or new == "d"


def test_leave_moves_only_what_the_node_held():
    before, after = _smap("abcd"), _smap("abc")
    for i in range(5000):
        old = before.ranked(b"ais/b/o%d" % i)
        if old[0].id != "d":
            assert after.owner("ais", "b", f"o{i}").id == old[0].id
        else:
            assert after.owner("ais", "b", f"o{i}").id == old[1].id


def test_owners_are_distinct_and_prefix_of_ranking():
    s = _smap("abcde")
    for i in range(200):
        three = s.owners("ais", "bk", f"x{i}", copies=3)
        assert len({n.id for n in three}) == 3
        assert three == s.ranked(b"ais/bk/x%d" % i)[:3]


def test_placement_depends_on_provider_and_bucket():
    s = _smap("abcdefgh")
    differ = sum(s.owner("ais", "b1", f"o{i}").id != s.owner("aws", "b1", f"o{i}").id
                 or s.owner("ais", "b1", f"o{i}").id != s.owner("ais", "b2", f"o{i}").id
                 for i in range(500))
    assert differ > 300


def test_lookup_and_single():
    s = Smap.single("t1", "http://h:1/")
    assert len(s) == 1 and s.me.url == "http://h:1" and s.node("zz") is None
    assert s.owner("ais", "b", "o").id == "t1"


class _KV:
    def __init__(self, key, value):
        self.key, self.value = key, value


def _kvs(entries):
    """etcd's node keys of `entries` ({"id", "url"[, "joining"]})."""
    import json

    from getbatch.cluster.membership import NODES
    return {NODES + e["id"]: _KV(NODES + e["id"], json.dumps(e)) for e in entries}


def test_joining_nodes_take_writes_but_serve_no_reads():
    from getbatch.cluster.membership import smap_builder

    entries = [{"id": "a", "url": "http://a"}, {"id": "b", "url": "http://b"},
               {"id": "c", "url": "http://c", "joining": True}]
    s = smap_builder("a")(_kvs(entries), 7)
    assert [n.id for n in s.nodes] == ["a", "b"] and [n.id for n in s.joining] == ["c"]
    assert s.node("c") is None and s.target("c").url == "http://c"
    whole = _smap("abc")
    for i in range(50):
        key = f"ais/b/o{i}".encode()
        assert [n.id for n in s.write_ranked(key)] == [n.id for n in whole.ranked(key)]
        assert "c" not in [n.id for n in s.ranked(key)]


def test_reads_compare_joining_and_lately_gone_nodes():
    """After an etcd pause every node's key is revoked and registered again (joining): the
    nodes whose stamps a read compares still include the name's first owners meanwhile, and
    the reader's own copy; a node gone for longer than LEFT_GRACE drops out."""
    import time

    from getbatch.cluster.membership import smap_builder
    from getbatch.cluster.smap import LEFT_GRACE

    every = [{"id": i, "url": f"http://{i}"} for i in "abcd"]
    back_entries = [every[2], dict(every[0], joining=True)]
    keys = [f"ais/b/o{i}".encode() for i in range(60)]
    build = smap_builder("c")
    whole = build(_kvs(every), 1)
    assert all(whole.compared(k, 2) == whole.ranked(k)[:2] for k in keys)
    assert not whole.left and not whole.alone("c")
    gone = build(_kvs([every[2]]), 2)             # only "c" registered again so far
    back = build(_kvs(back_entries), 3)
    for k in keys:
        hrw = [n.id for n in whole.ranked(k)]
        for s in (gone, back):
            ids = [n.id for n in s.compared(k, 2, whole.node("c"))]
            assert set(hrw[:2]) <= set(ids) and ids == [i for i in hrw if i in ids], (k, ids)
    assert not gone.alone("c") and [n.id for n in gone.nodes] == ["c"]
    # the same, the others gone LEFT_GRACE ago
    build = smap_builder("c", clock=lambda: time.monotonic() - LEFT_GRACE)
    build(_kvs(every), 1)
    back = build(_kvs(back_entries), 2)
    for k in keys:
        assert {n.id for n in back.compared(k, 2)} == {"a", "c"}, k
    assert back.recently_left() == [] and not back.alone("c")
    assert smap_builder("c")(_kvs([every[2]]), 1).alone("c")
