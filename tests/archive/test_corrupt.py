"""Damaged shards: truncation and byte flips raise only the documented errors, never hang."""
import tarfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from getbatch.archive import (CorruptArchive, MemberNotFound, NotAnArchive, _accel, memory,
                              open_shard)
from fuzzcheck import bounded, outcome
from tarhelp import compress, header, make_tar, pad, pax_record, special, text

SCANNERS = _accel.implementations("tarscan")
tarscan = SCANNERS.get("cython", SCANNERS["python"])  # the pure build checks the twin alone
pure = SCANNERS["python"]
DOCUMENTED = (CorruptArchive, NotAnArchive, MemberNotFound)
ENTRIES = ([(f"d/f{i:02d}.txt", text(97 * i, seed=i)) for i in range(12)]
           + [("x" * 140, b"long"), ("ünï/ç", b"pax"), special("dir", tarfile.DIRTYPE),
              special("sym", tarfile.SYMTYPE, "d/f01.txt")])
TAR = make_tar(ENTRIES, tarfile.PAX_FORMAT)
FILES = {n: d for n, d in ENTRIES[:14]}
ALL = tarscan.scan(TAR)
SLOW = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def exercise(path):
    """Open, list and read every file; return the members and the bytes read (None for
    members not found)."""
    memory.DEFAULT.clear()
    out = {}
    with bounded(), open_shard(path) as sh:
        members = sh.members()
        for name in FILES:
            try:
                out[name] = sh.read(name)
            except MemberNotFound:
                out[name] = None
        sh.read_many([n for n in FILES if out[n] is not None][::-1])
    return members, out


@SLOW
@given(cut=st.integers(0, len(TAR) - 1))
def test_truncated_tar(tmp_path, cut):
    path = tmp_path / "t.tar"
    path.write_bytes(TAR[:cut])
    try:
        members, data = exercise(path)
    except DOCUMENTED as exc:
        assert str(path) in str(exc)
    else:
        # a cut between members looks like a shorter archive (EOF is a tolerated end);
        # a cut inside a member's data never goes unnoticed
        assert not any(m.offset < cut < m.offset + m.size for m in ALL)
        assert members == ALL[:len(members)]
        assert all(v is None or v == FILES[n] for n, v in data.items())
    assert outcome(tarscan.scan, TAR[:cut]) == outcome(pure.scan, TAR[:cut])


@SLOW
@given(fmt=st.sampled_from(["tgz", "tar.lz4"]), frac=st.floats(0, 1, exclude_max=True))
def test_truncated_compressed(tmp_path, fmt, frac):
    blob = compress(TAR, fmt)
    path = tmp_path / ("t." + fmt)
    path.write_bytes(blob[:int(len(blob) * frac)])
    try:
        members, data = exercise(path)
    except DOCUMENTED as exc:
        assert str(path) in str(exc)
    else:
        assert members == ALL[:len(members)]
        assert all(v is None or v == FILES[n] for n, v in data.items())


@SLOW
@given(fmt=st.sampled_from(["tar", "tgz", "tar.lz4"]),
       flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
                      min_size=1, max_size=3))
def test_byte_flips(tmp_path, fmt, flips):
    blob = bytearray(TAR if fmt == "tar" else compress(TAR, fmt))
    for where, xor in flips:
        blob[int(where * len(blob))] ^= xor
    path = tmp_path / ("f." + fmt)
    path.write_bytes(blob)
    try:
        exercise(path)
    except DOCUMENTED as exc:
        assert str(path) in str(exc)
    if fmt == "tar":
        assert outcome(tarscan.scan, bytes(blob)) == outcome(pure.scan, bytes(blob))


@SLOW
@given(data=st.binary(min_size=0, max_size=3000))
def test_twins_agree_on_garbage_after_valid_header(data):
    buf = header(b"a", b"%011o\0" % 10) + pad(b"0123456789") + data
    assert outcome(tarscan.scan, buf) == outcome(pure.scan, buf)
    assert outcome(tarscan.scan, buf, partial=True) == outcome(pure.scan, buf, partial=True)


def crafted():
    big = 9 << 20
    return {
        "checksum": header(b"a")[:148] + b"0000001\0" + header(b"a")[156:],
        "bad size field": header(b"a", b"12x4       \0"),
        "negative size": header(b"a", b"\xff" * 12),
        "size too large": header(b"a", b"\x80" + b"\xff" * 11),
        "bad PAX record": header(b"p", b"%011o\0" % 9, b"x") + pad(b"9 path=a\0"),
        "no '='": header(b"p", b"%011o\0" % 8, b"x") + pad(b"8 patha\n"),
        "bad PAX record length": header(b"p", b"%011o\0" % 7, b"x") + pad(b"x path\n"),
        "bad PAX size": (header(b"p", b"%011o\0" % 12, b"x") + pad(pax_record(b"size", b"1e3"))
                         + header(b"a") + bytes(1024)),
        "not followed by a member": (header(b"L", b"%011o\0" % 4, b"L") + pad(b"abc\0")
                                     + bytes(1024)),
        "too large": header(b"L", b"%011o\0" % big, b"L") + bytes(512),
        "truncated header": header(b"a") + b"junk" * 50,
        "truncated extended header": header(b"L", b"%011o\0" % 2000, b"L") + bytes(600),
        "truncated: extended header": header(b"L", b"%011o\0" % 4, b"L") + pad(b"abc\0"),
    }


@pytest.mark.parametrize("what", sorted(crafted()))
def test_crafted_corruption(tmp_path, what):
    data = crafted()[what]
    for mod in {tarscan, pure}:
        with pytest.raises(CorruptArchive, match=what) as exc:
            mod.scan(data, shard="crafted.tar")
        assert "crafted.tar" in str(exc.value)
    path = tmp_path / "c.tar"
    path.write_bytes(data)
    memory.DEFAULT.clear()
    with pytest.raises(CorruptArchive, match=what):
        open_shard(path)


def test_shard_changed_after_indexing(tmp_path):
    path = tmp_path / "shrink.tar"
    path.write_bytes(TAR)
    memory.DEFAULT.clear()
    with open_shard(path) as sh:
        path.write_bytes(TAR[:1024])  # same inode, truncated under the open shard
        with pytest.raises(CorruptArchive, match="truncated"):
            sh.read_many(list(FILES))
