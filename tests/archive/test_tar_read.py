"""TAR reading: header scan against tarfile, Cython vs pure twin, lookups, format detection."""
import io
import os
import tarfile
import zipfile

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from getbatch.archive import (DIR, FILE, HARDLINK, OTHER, SYMLINK, CorruptArchive,
                              MemberNotFound, NotAnArchive, _accel, detect_format, open_shard)
from getbatch.archive.tarshard import CompressedTarShard, TarShard
from tarhelp import header, make_tar, pad, pax_record, special, write_shard

TWINS = list(_accel.implementations("tarscan").values())
tarscan = TWINS[-1]
FORMATS = {"gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT, "ustar": tarfile.USTAR_FORMAT}
KIND_OF = {tarfile.REGTYPE: FILE, tarfile.DIRTYPE: DIR, tarfile.SYMTYPE: SYMLINK,
           tarfile.LNKTYPE: HARDLINK, tarfile.CHRTYPE: OTHER, tarfile.BLKTYPE: OTHER,
           tarfile.FIFOTYPE: OTHER}


def expected(tar_bytes):
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), encoding="utf-8",
                      errors="surrogateescape") as t:
        return [(m.name, m.offset_data, m.size if m.isreg() else 0, KIND_OF[m.type])
                for m in t.getmembers()]


def got(members):
    return [(m.name, m.offset, m.size, m.kind) for m in members]


def scan_all_ways(data, tmp_path):
    """Scan `data` with each twin, from a buffer and from a file; all must agree."""
    path = tmp_path / "scan.tar"
    path.write_bytes(data)
    results = []
    fd = os.open(path, os.O_RDONLY)
    try:
        for mod in TWINS:
            results.append(mod.scan(data))
            results.append(mod.scan_fd(fd, len(data)))
    finally:
        os.close(fd)
    assert all(r == results[0] for r in results)
    return results[0]


segment = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/"),
                  min_size=1, max_size=40).filter(lambda s: s not in (".", ".."))
names = st.lists(segment, min_size=1, max_size=12).map("/".join)
sizes = st.one_of(st.sampled_from([0, 1, 511, 512, 513, 1024, 10240]), st.integers(0, 40000))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(fmt=st.sampled_from(sorted(FORMATS)),
       files=st.lists(st.tuples(names, sizes), min_size=1, max_size=6,
                      unique_by=lambda t: t[0]))
def test_round_trip_against_tarfile(tmp_path, fmt, files):
    entries = [(n, bytes([i % 251]) * s) for i, (n, s) in enumerate(files)]
    try:
        data = make_tar(entries, FORMATS[fmt])
    except ValueError:  # ustar cannot hold every long name
        assume(False)
    members = scan_all_ways(data, tmp_path)
    assert got(members) == expected(data)
    path = write_shard(tmp_path, "rt", data)
    with TarShard(path) as sh:
        assert sh.read_many([n for n, _ in reversed(entries)]) == [d for _, d in reversed(entries)]
        for n, d in entries:
            assert sh.extent(n) == (sh.lookup(n).offset, len(d))


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_long_names_and_links(tmp_path, fmt):
    long100 = "d" * 20 + "/" + "n" * 90 if fmt == "ustar" else "d/" + "n" * 110
    long255 = "/".join(["deep" * 10] * 7)  # > 255 bytes
    ent = [("short", b"x"), (long100, b"y" * 513)]
    if fmt != "ustar":
        ent += [(long255, b"z" * 511), ("ünïcødé/ファイル.txt", b"u"),
                special("ln", tarfile.SYMTYPE, "t" * 150)]
    data = make_tar(ent, FORMATS[fmt])
    members = scan_all_ways(data, tmp_path)
    assert got(members) == expected(data)
    assert [m.name for m in members][:2] == ["short", long100]


def test_kinds_listed_but_never_looked_up(tmp_path):
    data = make_tar([
        special("adir", tarfile.DIRTYPE), ("adir/f", b"data"),
        special("sym", tarfile.SYMTYPE, "adir/f"), special("hard", tarfile.LNKTYPE, "adir/f"),
        special("chr", tarfile.CHRTYPE), special("blk", tarfile.BLKTYPE),
        special("fifo", tarfile.FIFOTYPE)])
    path = write_shard(tmp_path, "kinds", data)
    with open_shard(path) as sh:
        kinds = {m.name: m.kind for m in sh.members()}
        assert kinds == {"adir": DIR, "adir/f": FILE, "sym": SYMLINK, "hard": HARDLINK,
                         "chr": OTHER, "blk": OTHER, "fifo": OTHER}
        for name in ("adir", "sym", "hard", "chr", "blk", "fifo"):
            with pytest.raises(MemberNotFound):
                sh.lookup(name)
            with pytest.raises(MemberNotFound):
                sh.read(name)
        assert sh.read("adir/f") == b"data"


def test_dot_slash_lookups_both_ways(tmp_path):
    data = make_tar([("./a", b"A"), ("b", b"B"), ("/c", b"C")])
    path = write_shard(tmp_path, "dots", data)
    with open_shard(path) as sh:
        assert sh.read_many(["a", "./a", "./b", "b", "c", "./c", "/a"]) == [
            b"A", b"A", b"B", b"B", b"C", b"C", b"A"]
        assert sh.lookup("a").name == "./a"
        with pytest.raises(MemberNotFound) as exc:
            sh.read("./nope")
        assert str(path) in str(exc.value)


def test_duplicate_names_first_wins(tmp_path):
    data = make_tar([("dup", b"first"), ("x", b"x"), ("dup", b"second"),
                     special("dir2", tarfile.DIRTYPE), ("dir2", b"file after dir")])
    path = write_shard(tmp_path, "dup", data)
    with open_shard(path) as sh:
        assert sh.read("dup") == b"first"
        assert [m.name for m in sh.members()].count("dup") == 2
        assert sh.read("dir2") == b"file after dir"


def test_exact_name_beats_variant(tmp_path):
    data = make_tar([("./v", b"dotted"), ("v", b"plain")])
    with open_shard(write_shard(tmp_path, "v", data)) as sh:
        assert sh.read("v") == b"plain" and sh.read("./v") == b"dotted"


def test_non_utf8_names_surrogateescape(tmp_path):
    name = "caf\udce9/\udcff.bin"
    data = make_tar([(name, b"raw")])
    members = scan_all_ways(data, tmp_path)
    assert members[0].name == name
    with open_shard(write_shard(tmp_path, "raw", data)) as sh:
        assert sh.read(name) == b"raw"


def test_pax_global_header_ignored_and_pax_overrides(tmp_path):
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w", format=tarfile.PAX_FORMAT,
                      pax_headers={"comment": "global"}) as t:
        ti = tarfile.TarInfo("g.txt")
        ti.size = 3
        t.addfile(ti, io.BytesIO(b"abc"))
    assert got(scan_all_ways(bio.getvalue(), tmp_path)) == expected(bio.getvalue())
    # hand-made: PAX size and path override the ustar fields
    recs = pax_record(b"path", "pax/ñame".encode()) + pax_record(b"size", b"600")
    data = (header(b"././@PaxHeader", b"%011o\0" % len(recs), b"x") + pad(recs)
            + header(b"ignored", b"%011o\0" % 0) + pad(b"p" * 600) + bytes(1024))
    m = scan_all_ways(data, tmp_path)
    assert got(m) == [("pax/ñame", 1536, 600, FILE)]


def test_gnu_longname_and_longlink_headers(tmp_path):
    long = b"L" * 300
    data = (header(b"././@LongLink", b"%011o\0" % (len(long) + 1), b"L") + pad(long + b"\0")
            + header(b"././@LongLink", b"%011o\0" % 5, b"K") + pad(b"tgt\0\0")
            + header(b"short", b"%011o\0" % 0, b"2", magic=b"ustar  \0") + bytes(1024))
    assert got(scan_all_ways(data, tmp_path)) == [(long.decode(), 2560, 0, SYMLINK)]


def test_ustar_prefix_used_only_with_posix_magic(tmp_path):
    posix = header(b"name", prefix=b"pre/fix") + bytes(1024)
    gnu = header(b"name", prefix=b"pre/fix", magic=b"ustar  \0") + bytes(1024)
    assert scan_all_ways(posix, tmp_path)[0].name == "pre/fix/name"
    assert scan_all_ways(gnu, tmp_path)[0].name == "name"


@pytest.mark.parametrize("field,value", [
    (b"%011o\0" % 700, 700), (b"%011o " % 700, 700), (b"   1274\0    ", 700),
    (b"1274" + bytes(8), 700), (b"\0" * 12, 0), (b" " * 12, 0), (b"%012o" % 700, 700),
    (b"\x80" + (700).to_bytes(11, "big"), 700)])
def test_numeric_fields(tmp_path, field, value):
    data = header(b"f", field) + pad(b"d" * value) + bytes(1024)
    assert got(scan_all_ways(data, tmp_path)) == [("f", 512, value, FILE)]


def test_base256_size_beyond_8gib():
    size = 9 << 30
    hdr = header(b"huge", b"\x80" + size.to_bytes(11, "big"))
    data = hdr + b"x" * 4096
    for mod in TWINS:
        with pytest.raises(CorruptArchive, match="truncated"):
            mod.scan(data, shard="huge.tar")
        members, nxt, done = mod.scan(data, 1000, partial=True)
        assert got(members) == [("huge", 1512, size, FILE)]
        assert nxt == 512 + size and not done


def test_signed_checksum_accepted(tmp_path):
    name = "é".encode() * 10  # high bytes make signed and unsigned sums differ
    data = header(name, checksum="signed") + bytes(1024)
    assert scan_all_ways(data, tmp_path)[0].name == "é" * 10


@pytest.mark.parametrize("ending", [bytes(1024), bytes(512), b"", bytes(100)])
def test_end_of_archive_variants(tmp_path, ending):
    data = header(b"a", b"%011o\0" % 3) + pad(b"abc") + ending
    assert got(scan_all_ways(data, tmp_path)) == [("a", 512, 3, FILE)]


def test_stops_at_first_zero_block(tmp_path):
    data = header(b"a") + bytes(512) + header(b"b") + bytes(1024)
    assert [m.name for m in scan_all_ways(data, tmp_path)] == ["a"]


def test_empty_archive(tmp_path):
    assert scan_all_ways(bytes(10240), tmp_path) == []
    path = tmp_path / "empty.tar"
    path.write_bytes(bytes(10240))
    with open_shard(path) as sh:
        assert sh.members() == []


def test_partial_scan_resumes():
    data = make_tar([("a", b"1" * 700), ("b" * 150, b"2" * 10), ("c", b"")])
    whole = tarscan.scan(data)
    for mod in TWINS:
        for cut in (0, 100, 512, 700, 1536, 2000, len(data)):
            first, nxt, done = mod.scan(data[:cut], partial=True)
            rest = mod.scan(data[nxt:], nxt) if nxt < len(data) else []
            assert first + rest == whole


# -- format detection and dispatch -------------------------------------------------------------

def test_detect_format_by_magic(tmp_path):
    tar = make_tar([("a", b"1")])
    from tarhelp import compress
    assert detect_format(tar) == "tar"
    assert detect_format(compress(tar, "tgz")) == "tgz"
    assert detect_format(compress(tar, "tar.lz4")) == "tar.lz4"
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w") as z:
        z.writestr("a", b"1")
    assert detect_format(bio.getvalue()) == "zip"
    empty_zip = io.BytesIO()
    zipfile.ZipFile(empty_zip, "w").close()
    assert detect_format(empty_zip.getvalue()) == "zip"
    # the extension does not override the bytes
    p = tmp_path / "really_a_tar.zip"
    p.write_bytes(tar)
    assert detect_format(p) == "tar"


def test_detect_v7_header_and_empty_tar(tmp_path):
    v7 = header(b"old", b"%011o\0" % 2, magic=bytes(8)) + pad(b"hi") + bytes(1024)
    assert detect_format(v7) == "tar"
    assert tarscan.scan(v7)[0].name == "old"
    assert detect_format(bytes(10240), name="e.tar") == "tar"
    with pytest.raises(NotAnArchive):
        detect_format(bytes(10240), name="e.bin")


def test_detect_ties_use_extension():
    # a tar whose first member is named like a zip local header
    tar = make_tar([("PK\x03\x04odd", b"1")])
    assert detect_format(tar, name="x.tar") == "tar"
    assert detect_format(tar, name="x.zip") == "zip"


@pytest.mark.parametrize("content", [b"", b"hello world" * 100, bytes(300)])
def test_not_an_archive_names_the_shard(tmp_path, content):
    p = tmp_path / "junk.bin"
    p.write_bytes(content)
    with pytest.raises(NotAnArchive) as exc:
        open_shard(p)
    assert "junk.bin" in str(exc.value)


def test_open_shard_dispatch(tmp_path):
    tar = make_tar([("a", b"1")])
    assert isinstance(open_shard(write_shard(tmp_path, "s", tar)), TarShard)
    for fmt in ("tgz", "tar.lz4"):
        sh = open_shard(write_shard(tmp_path, "s", tar, fmt))
        assert isinstance(sh, CompressedTarShard) and sh.format == fmt
        assert sh.read("a") == b"1" and sh.extent("a") is None
    from tarhelp import compress
    p = tmp_path / "s.tar.gz"
    p.write_bytes(compress(tar, "tgz"))
    assert open_shard(p).format == "tgz"
    pz = tmp_path / "s.zip"
    with zipfile.ZipFile(pz, "w") as z:
        z.writestr("a", b"1")
    from getbatch.archive.zipshard import ZipShard
    assert isinstance(open_shard(pz), ZipShard)


def test_read_uses_pread_extent(tmp_path):
    data = make_tar([("a", b"A" * 1000), ("b", b"B" * 10)])
    path = write_shard(tmp_path, "ext", data)
    with open_shard(path) as sh:
        off, size = sh.extent("b")
        assert os.pread(sh.fileno(), size, off) == b"B" * 10
