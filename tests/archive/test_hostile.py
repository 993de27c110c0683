"""Hostile shards: huge PAX headers and names cost bounded memory, CPU and index space.

Each case runs in a fresh interpreter that reports its peak RSS growth (ru_maxrss) and the
RSS it keeps, so one test's allocations cannot hide another's.
"""
import json
import os
import subprocess
import sys
import zlib

import pytest

from getbatch.archive import CorruptArchive, memory, open_shard
from getbatch.archive.member import NAME_MAX
from getbatch.archive.tarscan_py import EXT_MAX
from tarhelp import header, pad, pax_record

MiB = 1 << 20
PROBE = r"""
import json, resource, sys
from getbatch.archive import ArchiveError, backend, open_shard

def rss_kb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))

path, idx = sys.argv[1], sys.argv[2]
peak0, rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, rss_kb()
try:
    with open_shard(path, index_dir=idx) as sh:
        members = sh.members()
        data = sh.read_many([m.name for m in members[-3:]])
        outcome = ["ok", len(members), sum(map(len, data))]
except ArchiveError as exc:
    outcome = [type(exc).__name__, str(exc)[:400]]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"outcome": outcome, "peak_mb": (peak - peak0) / 1024,
                  "kept_mb": (rss_kb() - rss0) / 1024, "backend": backend()}))
"""


def member_with_pax(records, name=b"f", data=b"x"):
    body = b"".join(records)
    return (header(b"././@PaxHeader", b"%011o\0" % len(body), b"x") + pad(body)
            + header(name, b"%011o\0" % len(data)) + pad(data))


def write_tgz(path, pieces):
    """Stream-compress the TAR made of `pieces` (bytes or callables returning bytes)."""
    z = zlib.compressobj(6, zlib.DEFLATED, 31)
    with open(path, "wb") as f:
        for piece in pieces:
            f.write(z.compress(piece() if callable(piece) else piece))
        f.write(z.compress(bytes(1024)))
        f.write(z.flush())
    return path


def probe(path, idx_dir):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", PROBE, str(path), str(idx_dir)], env=env,
                         capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout)


def index_bytes(idx_dir):
    return sum(f.stat().st_size for f in idx_dir.iterdir()) if idx_dir.exists() else 0


@pytest.fixture(scope="module")
def pax_bomb(tmp_path_factory):
    """The reported shard: 40 PAX path records of 8 MB each, ~316 KB as .tgz."""
    record = pax_record(b"path", b"a" * (8 * MiB - 20))
    path = tmp_path_factory.mktemp("bomb") / "paxbomb.tgz"
    return write_tgz(path, [member_with_pax([record], b"f%d" % i) for i in range(40)])


def test_pax_path_bomb_is_refused_with_bounded_memory(pax_bomb, tmp_path):
    assert os.path.getsize(pax_bomb) < 400_000
    idx_dir = tmp_path / "idx"
    got = probe(pax_bomb, idx_dir)
    assert got["outcome"][0] == "CorruptArchive" and "too large" in got["outcome"][1]
    assert "paxbomb.tgz" in got["outcome"][1]
    assert got["peak_mb"] < 40 and got["kept_mb"] < 16, got   # was 0.7-1.1 GB peak
    assert index_bytes(idx_dir) == 0


def test_names_at_the_limit_and_megabyte_pax_headers_are_cheap(tmp_path):
    """Allowed but hostile: each member has a NAME_MAX-byte name and ~1 MiB of PAX records that
    are not kept. The shard reads; memory and the index stay small."""
    junk = pax_record(b"comment", b"j" * (EXT_MAX - NAME_MAX - 200))

    def member(i):
        name = (b"%04d/" % i) + b"n" * (NAME_MAX - 5)
        return lambda: member_with_pax([junk, pax_record(b"path", name)], b"short", b"%d" % i)

    path = write_tgz(tmp_path / "wide.tgz", [member(i) for i in range(40)])
    idx_dir = tmp_path / "idx"
    got = probe(path, idx_dir)
    assert got["outcome"] == ["ok", 40, 6], got
    assert got["peak_mb"] < 40 and got["kept_mb"] < 16, got
    assert 40 * NAME_MAX < index_bytes(idx_dir) < 40 * (NAME_MAX + 100)


def test_many_extended_headers_in_front_of_one_member(tmp_path):
    """Extended headers are bounded per member in total, not only one by one."""
    records = [pax_record(b"comment", b"c" * (EXT_MAX // 4)) for _ in range(8)]
    path = write_tgz(tmp_path / "stack.tgz", [member_with_pax([r]) [:-1024] for r in records]
                     + [header(b"f", b"%011o\0" % 1) + pad(b"x")])
    got = probe(path, tmp_path / "idx")
    assert got["outcome"][0] == "CorruptArchive" and "too large" in got["outcome"][1], got
    assert got["peak_mb"] < 40, got


def long_named(kind, name):
    if kind == "pax":
        return member_with_pax([pax_record(b"path", name)]) + bytes(1024)
    return (header(b"././@LongLink", b"%011o\0" % (len(name) + 1), b"L") + pad(name + b"\0")
            + header(b"f", b"%011o\0" % 1) + pad(b"x") + bytes(1024))


@pytest.mark.parametrize("kind", ["pax", "gnu"])
def test_name_longer_than_the_limit_is_corrupt(tmp_path, kind):
    name = b"d/" + b"x" * NAME_MAX
    path = tmp_path / "long.tar"
    path.write_bytes(long_named(kind, name))
    memory.DEFAULT.clear()
    with pytest.raises(CorruptArchive, match=f"{NAME_MAX + 2} bytes long") as exc:
        open_shard(path)
    assert "long.tar" in str(exc.value)
    path.write_bytes(long_named(kind, name[:NAME_MAX]))  # exactly NAME_MAX bytes is fine
    with open_shard(path) as sh:
        assert [m.name for m in sh.members()] == [name[:NAME_MAX].decode()]


def test_plain_tar_pax_bomb_reads_headers_only(tmp_path):
    record = pax_record(b"path", b"a" * (8 * MiB - 20))
    path = tmp_path / "bomb.tar"
    path.write_bytes(member_with_pax([record]) + bytes(1024))
    got = probe(path, tmp_path / "idx")
    assert got["outcome"][0] == "CorruptArchive" and "too large" in got["outcome"][1], got
    assert got["peak_mb"] < 16, got
