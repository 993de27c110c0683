"""InflateBudget: every decompressed byte is charged; decompression bombs stop at the limit with
a clear error, or stream in bounded memory when the limit allows them."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from getbatch.archive import InflateBudget, InflateLimit, memory, open_shard
from tarhelp import bomb, bulk, make_tar, write_shard

BOMBS = {"tgz": ".tgz", "tar.lz4": ".tar.lz4", "zip": ".zip"}
MiB = 1 << 20


def write_bomb(tmp_path, fmt, size, **kw):
    path = tmp_path / ("bomb" + BOMBS[fmt])
    path.write_bytes(bomb(fmt, size, **kw))
    memory.DEFAULT.clear()
    return path


def test_budget_charges_and_requires():
    b = InflateBudget(100)
    b.charge(60, "s")
    assert b.used == 60 and b.remaining() == 40
    b.require(40, "s")
    with pytest.raises(InflateLimit, match=r"^s: reading .* at least 101 bytes, over the "
                                           r"max_inflate limit of 100 bytes"):
        b.require(41, "s")
    with pytest.raises(InflateLimit, match="more than 100 bytes"):
        b.charge(41, "s")
    free = InflateBudget(0)
    free.charge(1 << 50, "s")
    free.require(1 << 50, "s")
    assert free.remaining() is None and free.used == 1 << 50


@pytest.mark.parametrize("fmt", ["tgz", "tar.lz4"])
def test_compressed_tar_bomb_stops_in_the_index_scan(tmp_path, fmt):
    path = write_bomb(tmp_path, fmt, 1 << 30)
    budget = InflateBudget(16 * MiB)
    with open_shard(path, budget=budget, name="bucket/bomb") as sh:
        with pytest.raises(InflateLimit) as ei:
            sh.lookup("bomb")
    assert str(ei.value).startswith("bucket/bomb: ") and "16777216" in str(ei.value)
    assert 16 * MiB < budget.used <= 17 * MiB     # stopped at the first chunk over


def test_zip_bomb_is_refused_before_inflating(tmp_path):
    path = write_bomb(tmp_path, "zip", 1 << 30, crc=False)
    budget = InflateBudget(16 * MiB)
    with open_shard(path, budget=budget) as sh:
        assert sh.lookup("bomb").size == 1 << 30   # the directory is not the bomb
        assert sh.inflate_cost([("bomb", 0, None), ("bomb", 5, 1)]) == 1 << 30
        with pytest.raises(InflateLimit):
            budget.require(sh.inflate_cost([("bomb", 0, 10)]), sh.name)
        with pytest.raises(InflateLimit):
            sh.read("bomb")                      # charged up front: nothing inflated
        budget.used = 0
        got = 0
        with pytest.raises(InflateLimit):
            for chunk in sh.iter_member("bomb"):
                got += len(chunk)
        assert got <= 16 * MiB


@pytest.mark.parametrize("fmt", ["tgz", "tar.lz4"])
def test_costs_of_compressed_tar_members(tmp_path, fmt):
    items = [("a", b"a" * 1000), ("b", bulk(300_000)), ("c", b"c")]
    path = write_shard(tmp_path, "s", make_tar(items), fmt)
    budget = InflateBudget(0)
    with open_shard(path, budget=budget) as sh:
        ends = {m.name: m.offset + m.size for m in sh.members()}
        scanned = budget.used
        assert scanned >= ends["c"]
        assert sh.inflate_cost([("a", 0, None)]) == ends["a"]
        assert sh.inflate_cost([("c", 0, None), ("a", 0, None), ("b", 0, None)]) == ends["c"]
        assert sh.inflate_cost([("b", 10, 20)]) == ends["b"] - 300_000 + 30
        sh.read_many(["b", "a"])
        assert sh.passes == 2 and scanned + ends["b"] <= budget.used


# Each bomb of 1 GiB streamed whole with no limit, in a fresh process whose peak RSS is read.
_STREAM = textwrap.dedent("""
    import json, sys
    from getbatch.archive import InflateBudget, open_shard

    def rss(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024

    path = sys.argv[1]
    with open_shard(path, budget=InflateBudget(0)) as sh:
        sh.members()
        base = rss("VmRSS")
        n = sum(len(c) for c in sh.iter_member("bomb"))
        used = sh.budget.used
    print(json.dumps({"n": n, "base": base, "peak": rss("VmHWM"), "used": used}))
""")


@pytest.mark.parametrize("fmt", ["tgz", "tar.lz4", "zip"])
def test_bomb_within_a_large_budget_streams_in_bounded_memory(tmp_path, fmt):
    path = write_bomb(tmp_path, fmt, 1 << 30)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", _STREAM, str(path)], check=True,
                         capture_output=True, text=True, env=env, timeout=300)
    got = json.loads(out.stdout)
    assert got["n"] == 1 << 30
    # the index scan (tar formats) and the read each inflate the whole member
    assert got["used"] >= (1 << 30) * (1 if fmt == "zip" else 2)
    assert got["peak"] - got["base"] < 24 * MiB, got
