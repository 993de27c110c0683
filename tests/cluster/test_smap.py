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


def test_joining_nodes_take_writes_but_serve_no_reads():
    import json

    from getbatch.cluster.membership import NODES, smap_builder

    class KV:
        def __init__(self, key, value):
            self.key, self.value = key, value
    entries = [{"id": "a", "url": "http://a"}, {"id": "b", "url": "http://b"},
               {"id": "c", "url": "http://c", "joining": True}]
    s = smap_builder("a")({NODES + e["id"]: KV(NODES + e["id"], json.dumps(e))
                           for e in entries}, 7)
    assert [n.id for n in s.nodes] == ["a", "b"] and [n.id for n in s.joining] == ["c"]
    assert s.node("c") is None and s.target("c").url == "http://c"
    whole = _smap("abc")
    for i in range(50):
        key = f"ais/b/o{i}".encode()
        assert [n.id for n in s.write_ranked(key)] == [n.id for n in whole.ranked(key)]
        assert "c" not in [n.id for n in s.ranked(key)]
