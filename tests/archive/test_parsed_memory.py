"""Parsed shards (TAR indexes, ZIP central directories) are kept in a ShardMemory (a server
app has one, sized by `index_memory`) within its bytes, whatever their count: many shards of
many tiny members, one member read from each (issue 16: twelve such .zip shards kept ~600 MiB
in a worker), leave at most the budget behind, measured with tracemalloc (deterministic where RSS is not)."""
import gc
import io
import tarfile
import tracemalloc
import zipfile

import pytest

from getbatch.archive import MemberNotFound, ShardMemory, open_shard

SHARDS = 8
MEMBERS = 2000
BUDGET = 1_700_000   # ~3 of the shards below


def make(path, fmt):
    names = [f"m{i:07d}.bin" for i in range(MEMBERS)]
    if fmt == "zip":
        with zipfile.ZipFile(path, "w") as z:
            for n in names:
                z.writestr(n, b"")
    else:
        with tarfile.open(path, "w") as t:
            for n in names:
                t.addfile(tarfile.TarInfo(n), io.BytesIO(b""))
    return path


@pytest.mark.parametrize("fmt", ["zip", "tar"])
def test_parsed_shards_kept_within_the_budget(tmp_path, fmt):
    budget = ShardMemory(BUDGET)
    paths = [make(tmp_path / f"s{i}.{fmt}", fmt) for i in range(SHARDS)]
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for p in paths:
            with open_shard(str(p), memory=budget) as sh:
                assert sh.read("m0000042.bin") == b""
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert budget.parsed.weight <= BUDGET and 2 <= len(budget.parsed) < SHARDS
    assert kept <= BUDGET * 1.1, f"{kept} bytes kept for a budget of {BUDGET}"


def test_a_shard_heavier_than_the_budget_is_read_and_not_kept(tmp_path):
    small = ShardMemory(100_000)
    path = make(tmp_path / "big.zip", "zip")
    for _ in range(2):
        with open_shard(str(path), memory=small) as sh:
            assert sh.read("m0001999.bin") == b""
        assert len(small.parsed) == 0


@pytest.mark.parametrize("fmt", ["zip", "tar"])
def test_a_closed_shard_still_referenced_holds_no_evicted_index(tmp_path, fmt):
    nothing = ShardMemory(0)   # nothing kept: only shards hold them
    path = make(tmp_path / f"one.{fmt}", fmt)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        sh = open_shard(str(path), memory=nothing)
        assert sh.read("m0000042.bin") == b""
        sh.close()                       # a finished request's plan may hold it a while
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert held < 64 << 10, f"a closed shard holds {held} bytes"
    with pytest.raises(MemberNotFound):
        sh.lookup("m0000042.bin")
