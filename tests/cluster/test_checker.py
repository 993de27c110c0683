"""The consistency checker on hand-made histories: it flags what the contract forbids (a lost
overwrite, a stale read, a delete that came back, a lost write, a mixed item, diverged copies,
too few copies) and accepts what it allows (reads racing a write, unknown writes either way,
either winner of concurrent PUTs). The nemesis schedule is a function of its seed."""
from tests.cluster.checker import (ABSENT, DIVERGED, FEW_COPIES, LOST_OVERWRITE, LOST_WRITE,
                                   MIXED, PHANTOM, REFUSED, RESURRECTED, STALE, Checker, Op)
from tests.cluster.nemesis import FAULTS, Report, schedule
from tests.cluster.workload import BLOCK, Versions


def put(vid, start, end, ok=True, key="k"):
    return Op("put", key, start, end, ok, vid, via="n0")


def delete(start, end, ok=True, key="k"):
    return Op("delete", key, start, end, ok, via="n1")


def read(vid, start, end, key="k", bad=""):
    return Op("read", key, start, end, vid=vid, via="n2", bad=bad)


def kinds(violations):
    return [v.kind for v in violations]


def test_a_lost_overwrite_is_flagged_in_reads_and_after_healing():
    ops = [put("v0", 0, 1), put("v1", 2, 3), read("v1", 4, 5), read("v0", 6, 7)]
    c = Checker(ops)
    assert kinds(c.check_reads()) == [STALE]
    assert kinds(c.check_final("k", {0: "v0", 1: "v0"})) == [LOST_OVERWRITE] * 2
    assert c.check_final("k", {0: "v1", 1: "v1"}, copies=2, holders={"a": "v1", "b": "v1"}) == []


def test_reads_racing_a_write_may_see_either_state():
    ops = [put("v0", 0, 1), put("v1", 2, 4), read("v0", 3, 3.5), read("v1", 2.5, 3),
           read("v0", 1.5, 2.5), read("v1", 3.9, 5)]
    assert Checker(ops).check_reads() == []


def test_a_read_that_started_after_the_ack_must_see_it():
    ops = [put("v0", 0, 1), put("v1", 2, 4), read("v0", 4.01, 5)]
    assert kinds(Checker(ops).check_reads()) == [STALE]


def test_a_resurrected_delete_is_flagged():
    ops = [put("v0", 0, 1), delete(2, 3), read(ABSENT, 3.5, 4), read("v0", 5, 6)]
    c = Checker(ops)
    vs = c.check_reads()
    assert kinds(vs) == [RESURRECTED] and "delete" in vs[0].detail
    assert kinds(c.check_final("k", {0: "v0", 1: ABSENT})) == [RESURRECTED, DIVERGED]
    assert c.check_final("k", {0: ABSENT, 1: ABSENT}, copies=2,
                         holders={"a": ABSENT, "b": ABSENT, "c": ABSENT}) == []


def test_an_acknowledged_write_not_found_is_flagged():
    ops = [delete(0, 1), put("v0", 2, 3), read(ABSENT, 3.5, 4)]
    c = Checker(ops)
    assert kinds(c.check_reads()) == [LOST_WRITE]
    assert kinds(c.check_final("k", {0: ABSENT})) == [LOST_WRITE]


def test_unknown_writes_may_or_may_not_have_happened_and_refused_ones_did_not():
    ops = [put("v0", 0, 1), put("v1", 2, 3, ok=None), put("v2", 4, 5, ok=False),
           read("v0", 6, 7), read("v1", 6, 7), read("v2", 6, 7)]
    c = Checker(ops)
    assert kinds(c.check_reads()) == [PHANTOM]
    assert c.check_final("k", {0: "v0"}) == [] and c.check_final("k", {0: "v1"}) == []


def test_a_valid_write_refused_with_a_4xx_is_flagged_and_may_have_happened():
    ops = [put("v0", 0, 1), Op("put", "k", 2, 3, None, "v1", "n0", "404: ErrObjNotFound"),
           read("v1", 4, 5)]
    c = Checker(ops)
    assert kinds(c.check_writes()) == [REFUSED] and c.check_reads() == []


def test_a_version_read_before_it_was_written_is_a_phantom():
    ops = [put("v0", 0, 1), put("v1", 5, 6), read("v1", 2, 3), read("v9", 7, 8)]
    assert kinds(Checker(ops).check_reads()) == [PHANTOM, PHANTOM]


def test_concurrent_puts_may_converge_to_either_but_must_converge():
    ops = [put("a", 0, 2), put("b", 1, 3)]
    c = Checker(ops)
    assert c.check_final("k", {0: "a", 1: "a"}, copies=2, holders={"x": "a", "y": "a"}) == []
    assert c.check_final("k", {0: "b", 1: "b"}, copies=2, holders={"x": "b", "y": "b"}) == []
    assert kinds(c.check_final("k", {0: "a", 1: "b"})) == [DIVERGED]
    assert kinds(c.check_final("k", {0: "a", 1: "a"}, copies=2,
                               holders={"x": "a", "y": "b"})) == [DIVERGED, FEW_COPIES]


def test_too_few_copies_after_healing():
    c = Checker([put("a", 0, 1)])
    assert kinds(c.check_final("k", {0: "a"}, copies=2,
                               holders={"x": "a", "y": ABSENT})) == [FEW_COPIES]


def test_a_mixed_item_is_named_by_its_blocks():
    v = Versions()
    v0 = v.new("obj", "v0", 4 * BLOCK + 100)
    v1 = v.new("obj", "v1", 4 * BLOCK + 100)
    assert v.identify("obj", v0) == ("v0", "") and v.identify("obj", v1) == ("v1", "")
    vid, bad = v.identify("obj", v0[:BLOCK] + v1[BLOCK:])
    assert vid is None and bad == f"{4 * BLOCK + 100} bytes, 1 block(s) of v0 then 4 block(s) of v1"
    assert v.identify("other", v0)[0] is None  # the right bytes under another name are wrong
    c = Checker([put("v0", 0, 1, key="obj"), read(None, 2, 3, key="obj", bad=bad)])
    assert kinds(c.check_reads()) == [MIXED]


def test_the_schedule_is_a_function_of_the_seed():
    a, b = schedule(7, 60), schedule(7, 60)
    assert a == b and a != schedule(8, 60)
    assert {f.kind for f in schedule(1, 600)} == set(FAULTS)
    nodes = 3
    for f in schedule(3, 600):  # never fewer than 3 nodes, nor more than 4
        nodes += {"join": 1, "leave": -1}.get(f.kind, 0)
        assert 3 <= nodes <= 4


def test_the_report_places_each_violation_after_its_fault():
    r = Report(1, 10, {}, {}, {}, [], "done", [(1.0, 3.0, "kill", "node 1"),
                                              (6.0, 8.5, "etcd_pause", "etcd")])
    assert r.near(0.5) == "before any fault"
    assert r.near(2.0) == "kill of node 1 at 1.0 s, during it"
    assert r.near(5.0) == "kill of node 1 at 1.0 s, 2.0 s after it healed"
    assert r.near(9.0) == "etcd_pause of etcd at 6.0 s, 0.5 s after it healed"
