"""ZIP reading: central directory and member bytes cross-checked against zipfile; damage never crashes."""
import io
import itertools
import os
import warnings
import zipfile

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from getbatch.archive import CorruptArchive, MemberNotFound, NotAnArchive, _accel, open_writer
from getbatch.archive import zipcd
from getbatch.archive.zipshard import ZipShard

PARSERS = list(_accel.implementations("zipcd").values())  # the twin alone in a pure build

_counter = itertools.count()
ALLOWED = (CorruptArchive, NotAnArchive, MemberNotFound)


def fresh(tmp_path, blob):
    """A new file per archive (the directory cache is keyed by the file's identity)."""
    path = tmp_path / ("z%d.zip" % next(_counter))
    path.write_bytes(blob)
    return path


def make_zip(path, entries, comment=b"", force_zip64=False):
    """entries: (name, data, compress_type); directories end with '/'."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # duplicate names are intended
        with zipfile.ZipFile(path, "w") as zf:
            zf.comment = comment
            for name, data, ctype in entries:
                info = zipfile.ZipInfo(name, (2020, 1, 2, 3, 4, 6))
                info.compress_type = ctype
                if force_zip64:
                    with zf.open(info, "w", force_zip64=True) as f:
                        f.write(data)
                else:
                    zf.writestr(info, data)
    return path


def parse_with(parser, path):
    fd = os.open(path, os.O_RDONLY)
    try:
        return parser.read_central_directory(fd, os.fstat(fd).st_size, str(path))
    finally:
        os.close(fd)


def check_against_zipfile(path):
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        for parser in PARSERS:
            members = parse_with(parser, path)
            assert [(m.name, m.offset, m.size, m.csize, m.crc, m.method) for m in members] == [
                (i.filename, i.header_offset, i.file_size, i.compress_size, i.CRC, i.compress_type)
                for i in infos]
            assert [m.kind for m in members] == ["dir" if i.is_dir() else "file" for i in infos]
        first = {}
        for i in infos:
            if not i.is_dir():
                first.setdefault(i.filename, i)
        with ZipShard(path) as sh:
            names = list(first)
            assert sh.read_many(names[::-1]) == [zf.read(first[n]) for n in names[::-1]]
            for n in names:
                ext = sh.extent(n)
                if first[n].compress_type == zipfile.ZIP_STORED:
                    off, size = ext
                    with open(path, "rb") as f:
                        f.seek(off)
                        assert f.read(size) == zf.read(first[n])
                else:
                    assert ext is None


name_st = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                  min_size=1, max_size=40)
entry_st = st.tuples(name_st, st.binary(max_size=3000) | st.sampled_from([b"", b"ab" * 9000]),
                     st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(entries=st.lists(entry_st, max_size=10),
       comment=st.binary(max_size=300).filter(lambda c: b"PK\x05\x06" not in c),   # zipfile can't
       zip64=st.booleans())
def test_matches_zipfile(tmp_path, entries, comment, zip64):
    path = make_zip(tmp_path / ("h%d.zip" % next(_counter)), entries, comment, zip64)
    check_against_zipfile(path)


def test_fixed_archive_features(tmp_path):
    entries = [("dir/", b"", 0), ("a.txt", b"A" * 1000, 0), ("a.txt", b"second", 0),
               ("d.txt", b"xyz" * 5000, 8), ("empty", b"", 8), ("ünï/cödé", b"u", 0)]
    path = make_zip(tmp_path / "f.zip", entries, comment=b"an archive comment", force_zip64=True)
    check_against_zipfile(path)
    with ZipShard(path) as sh:
        assert sh.read("a.txt") == b"A" * 1000                 # first of duplicates wins
        assert sh.read("./d.txt") == sh.read("/d.txt") == b"xyz" * 5000
        with pytest.raises(MemberNotFound):
            sh.lookup("dir/")                                  # directories are not members to read
        with pytest.raises(MemberNotFound):
            sh.read("nope")
        assert [m.name for m in sh.members()] == [e[0] for e in entries]


def test_comment_holding_the_end_signature(tmp_path):
    # zipfile takes the fake record inside the comment; the length check finds the real one
    path = make_zip(tmp_path / "sig.zip", [("a", b"1", 0)], comment=b"xx PK\x05\x06" + bytes(18) + b"tail")
    for parser in PARSERS:
        assert [m.name for m in parse_with(parser, path)] == ["a"]


def test_cp437_names_and_prepended_data(tmp_path):
    path = make_zip(tmp_path / "p.zip", [("cafe_1", b"1", 0), ("b", b"2", 8)])
    blob = path.read_bytes().replace(b"cafe_1", b"caf\x82_1")   # no UTF-8 flag: cp437 0x82 is 'é'
    check_against_zipfile(fresh(tmp_path, blob))
    check_against_zipfile(fresh(tmp_path, b"#!/bin/sh\nexit 0\n" + blob))   # self-extractor style


def test_reads_own_writer_output(tmp_path):
    for compress in (False, True):
        with open(tmp_path / "w.zip", "wb") as f:
            with open_writer("zip", f, compress_zip=compress) as w:
                w.add("a", b"x" * 100_000)
                w.add_stream("b/c", 5, [b"12", b"345"])
                w.add("a", b"dup")
        check_against_zipfile(fresh(tmp_path, (tmp_path / "w.zip").read_bytes()))


def test_directory_parsed_once(tmp_path, monkeypatch):
    path = make_zip(tmp_path / "c.zip", [("a", b"1", 0)])
    calls = []
    real = zipcd.read_central_directory
    monkeypatch.setattr(zipcd, "read_central_directory",
                        lambda *a: calls.append(a) or real(*a))
    for _ in range(3):
        with ZipShard(path) as sh:
            assert sh.read("a") == b"1"
    assert len(calls) == 1


def test_crc_mismatch_detected(tmp_path):
    blob = make_zip(tmp_path / "crc.zip", [("s", b"stored data", 0), ("d", b"deflated" * 50, 8)]).read_bytes()
    stored = bytearray(blob)
    stored[stored.index(b"stored data")] ^= 1
    with ZipShard(fresh(tmp_path, bytes(stored))) as sh:
        with pytest.raises(CorruptArchive, match="CRC"):
            sh.read("s")
    cd = blob.rindex(b"PK\x01\x02")                         # "d" is the last entry: flip its CRC
    bad = bytearray(blob)
    bad[cd + 16] ^= 0xFF
    with ZipShard(fresh(tmp_path, bytes(bad))) as sh:
        with pytest.raises(CorruptArchive, match="CRC"):
            sh.read("d")


@pytest.mark.parametrize("first", ["extent", "read"])
def test_corrupt_stored_member_fails_before_it_is_served(tmp_path, first):
    """A stored member is served zero-copy from extent(): its CRC is checked there, once."""
    blob = bytearray(make_zip(tmp_path / "s.zip", [("ok", b"fine" * 1000, 0),
                                                   ("bad", b"payload" * 5000, 0)]).read_bytes())
    blob[blob.index(b"payload" * 100) + 12345] ^= 0x20
    with ZipShard(fresh(tmp_path, bytes(blob))) as sh:
        calls = ("extent", "read") if first == "extent" else ("read", "extent")
        for call in calls * 2:
            with pytest.raises(CorruptArchive, match="CRC-32 mismatch in bad"):
                getattr(sh, call)("bad")
        off, size = sh.extent("ok")
        assert os.pread(sh.fileno(), size, off) == b"fine" * 1000


def test_stored_member_crc_checked_once_per_version(tmp_path, monkeypatch):
    path = fresh(tmp_path, make_zip(tmp_path / "s.zip", [("a", b"x" * 300_000, 0)]).read_bytes())
    reads = []
    real = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, off: reads.append(n) or real(fd, n, off))
    for _ in range(3):
        with ZipShard(path) as sh:
            assert sh.extent("a")[1] == 300_000
    assert reads.count(300_000) == 1  # the member's bytes, read once for its CRC


def test_entries_sharing_a_local_header_are_each_bounds_checked(tmp_path):
    """Found by fuzzing: a second directory entry pointing at an already-resolved local header
    with a compressed size of 1.6 GB made the reader allocate that much before failing."""
    import tracemalloc
    blob = bytearray(make_zip(tmp_path / "s.zip", [("a", b"alpha", 0), ("b", b"beta" * 50, 8)])
                     .read_bytes())
    second = blob.rindex(b"PK\x01\x02")
    blob[second + 20:second + 24] = (1_600_000_000).to_bytes(4, "little")  # csize
    blob[second + 42:second + 46] = bytes(4)                               # a's local header
    tracemalloc.start()
    try:
        with ZipShard(fresh(tmp_path, bytes(blob))) as sh:
            assert sh.read("a") == b"alpha"
            with pytest.raises(CorruptArchive, match="runs past the end"):
                sh.read("b")
        assert tracemalloc.get_traced_memory()[1] < 10_000_000
    finally:
        tracemalloc.stop()


def test_unsupported_method(tmp_path):
    blob = bytearray(make_zip(tmp_path / "m.zip", [("a", b"abc", 0)]).read_bytes())
    cd = blob.rindex(b"PK\x01\x02")
    blob[cd + 10] = 12                                         # bzip2
    with ZipShard(fresh(tmp_path, bytes(blob))) as sh:
        with pytest.raises(CorruptArchive, match="unsupported compression method 12"):
            sh.read("a")


def test_not_an_archive(tmp_path):
    for blob in (b"", b"hello", os.urandom(5000)):
        with pytest.raises(NotAnArchive):
            ZipShard(fresh(tmp_path, blob))


def _sample_blob():
    buf = io.BytesIO()
    make_zip(buf, [("d/", b"", 0), ("a", b"alpha" * 300, 0), ("b", b"beta" * 400, 8), ("c", b"", 0)],
             comment=b"note")
    return buf.getvalue()


SAMPLE = _sample_blob()


def _exercise(path):
    with ZipShard(path) as sh:
        for name in ("a", "b", "c"):
            try:
                sh.read(name)
                sh.extent(name)
            except ALLOWED:
                pass


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(cut=st.integers(0, len(SAMPLE)), flips=st.lists(st.tuples(st.integers(0, len(SAMPLE) - 1),
                                                                   st.integers(1, 255)), max_size=4))
def test_damage_raises_only_archive_errors(tmp_path, cut, flips):
    blob = bytearray(SAMPLE)
    for pos, xor in flips:
        blob[pos] ^= xor
    blob = bytes(blob[:cut] if cut % 3 == 0 else blob)
    path = fresh(tmp_path, blob)
    for parser in PARSERS:
        try:
            parse_with(parser, path)
        except ALLOWED:
            pass
    try:
        _exercise(path)
    except ALLOWED:
        pass
