"""Property-based fuzzing of the TAR, compressed TAR and ZIP readers and the index loader.

The properties live in fuzzcheck.py (shared with the atheris harnesses in fuzz/). Inputs are
real archives made by tarfile / zipfile / gzip / lz4, then mutated: header bytes (with the
header checksum fixed or not, so mutations reach past the checksum test), compressed bytes,
any ZIP byte, truncation, persisted-index bytes and fields. GETBATCH_FUZZ_EXAMPLES raises the
number of examples for long runs (the suite default keeps this file to a few seconds).
"""
import array
import io
import os
import tarfile
import warnings
import zipfile

import msgpack
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import fuzzcheck
from getbatch.archive import index, memory
from tarhelp import compress

EXAMPLES = int(os.environ.get("GETBATCH_FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=EXAMPLES or 60, deadline=None, derandomize=not EXAMPLES,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture
def files(tmp_path):
    return fuzzcheck.Files(tmp_path)


# ---- inputs

segment = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\x00"),
                  min_size=1, max_size=30).filter(lambda s: s not in (".", ".."))
names = st.one_of(
    st.lists(segment, min_size=1, max_size=4).map("/".join),
    st.builds(lambda n: "./" + n, segment),
    st.integers(90, 300).map(lambda n: "d/" + "n" * n),
    st.sampled_from(["a", "a", "b/c", "x.wav"]))       # duplicates on purpose
kinds = st.sampled_from([tarfile.REGTYPE] * 6 + [tarfile.DIRTYPE, tarfile.SYMTYPE,
                                                 tarfile.LNKTYPE, tarfile.FIFOTYPE])
entries = st.lists(st.tuples(names, kinds, st.binary(max_size=1500)), min_size=1, max_size=6)
tar_formats = st.sampled_from([tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])


def build_tar(items, fmt):
    bio = io.BytesIO()
    try:
        with tarfile.open(fileobj=bio, mode="w", format=fmt, encoding="utf-8",
                          errors="surrogateescape") as t:
            for name, kind, data in items:
                ti = tarfile.TarInfo(name)
                ti.type = kind
                if kind == tarfile.REGTYPE:
                    ti.size = len(data)
                    t.addfile(ti, io.BytesIO(data))
                else:
                    ti.linkname = "a" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
                    t.addfile(ti)
    except ValueError:  # ustar cannot hold every name: the same entries in GNU format
        return build_tar(items, tarfile.GNU_FORMAT)
    return bio.getvalue()


def header_blocks(blob):
    """Offsets of the 512-byte header blocks (extended headers included) of a valid TAR."""
    out = []
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:") as t:
        for m in t.getmembers():
            out.extend(range(m.offset, m.offset_data, 512))
    return out


def fix_checksum(buf, start):
    block = buf[start:start + 512]
    block[148:156] = b" " * 8
    buf[start + 148:start + 156] = b"%06o\0 " % (sum(block) & 0o777777)


@st.composite
def mutated_tars(draw):
    """(mutated TAR bytes, the unmutated one): a few header bytes changed, checksums fixed or
    not, sometimes truncated."""
    blob = build_tar(draw(entries), draw(tar_formats))
    buf = bytearray(blob)
    blocks = header_blocks(blob)
    fix = draw(st.booleans())
    for _ in range(draw(st.integers(0, 4))):
        start = draw(st.sampled_from(blocks))
        where = draw(st.one_of(st.integers(0, 511), st.sampled_from(
            [0, 99, 124, 130, 135, 156, 257, 263, 345])))       # name, size, type, magic, prefix
        if draw(st.booleans()):
            buf[start + where] ^= draw(st.integers(1, 255))
        else:
            buf[start + where] = draw(st.sampled_from(b"0179 \x00\x80\xffxgLK/.5"))
        if fix and not 148 <= where < 156:
            fix_checksum(buf, start)
    if draw(st.integers(0, 5)) == 0:
        del buf[draw(st.integers(0, len(buf))):]
    return bytes(buf), blob


# ---- TAR

@FUZZ
@given(case=mutated_tars())
def test_tar_reader_on_mutated_headers(files, case):
    blob, original = case
    got = fuzzcheck.check_tar(blob, files)
    if blob == original:
        assert got[0] == "ok"


@FUZZ
@given(blob=st.binary(max_size=3000))
def test_tar_reader_on_arbitrary_bytes(files, blob):
    fuzzcheck.check_tar(blob, files)


# ---- compressed TAR

@FUZZ
@given(case=mutated_tars(), fmt=st.sampled_from(["tgz", "tar.lz4"]),
       flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
                      max_size=3), cut=st.one_of(st.none(), st.floats(0, 1)))
def test_compressed_reader(files, case, fmt, flips, cut):
    blob = bytearray(compress(case[0], fmt))
    for where, xor in flips:
        blob[int(where * len(blob))] ^= xor
    if cut is not None:
        del blob[int(cut * len(blob)):]
    fuzzcheck.check_compressed(bytes(blob), fmt, files)


# ---- ZIP

zip_entries = st.lists(st.tuples(names, st.binary(max_size=2000),
                                 st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])),
                       min_size=1, max_size=5)


def build_zip(items, comment):
    bio = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(bio, "w") as z:
        warnings.simplefilter("ignore")  # duplicate names are intended
        z.comment = comment
        for name, data, method in items:
            info = zipfile.ZipInfo(name, (2021, 1, 1, 0, 0, 0))
            info.compress_type = method
            z.writestr(info, data)
    return bio.getvalue()


@FUZZ
@given(items=zip_entries, comment=st.binary(max_size=40),
       flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
                      max_size=4), cut=st.one_of(st.none(), st.floats(0, 1)))
def test_zip_reader(files, items, comment, flips, cut):
    blob = bytearray(build_zip(items, comment))
    for where, xor in flips:
        blob[int(where * len(blob))] ^= xor
    if cut is not None:
        del blob[int(cut * len(blob)):]
    got = fuzzcheck.check_zip(bytes(blob), files)
    if not flips and cut is None:
        assert got[0] == "ok"


# ---- persisted index

@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    """Shards (.tar and .tgz) with their persisted index, and what a fresh read gives."""
    out = {}
    base = tmp_path_factory.mktemp("indexed")
    tar = build_tar([(f"m/{i:02d}", tarfile.REGTYPE, b"%d" % i * (50 * i + 1)) for i in range(12)]
                    + [("d", tarfile.DIRTYPE, b""), ("long/" + "x" * 150, tarfile.REGTYPE, b"L")],
                    tarfile.GNU_FORMAT)
    for fmt, data in (("tar", tar), ("tgz", compress(tar, "tgz"))):
        path = base / ("s." + fmt)
        path.write_bytes(data)
        idx_dir = base / ("idx-" + fmt)
        memory.DEFAULT.clear()
        _, members, _, contents, _, _ = fuzzcheck.read_all(str(path), "", index_dir=idx_dir)
        (blob,) = [f.read_bytes() for f in idx_dir.iterdir()]
        memory.DEFAULT.clear()
        fuzzcheck.check_index(blob, str(path), idx_dir, (members, contents), sealed=True)
        assert memory.DEFAULT.stats["loads"] >= 1  # the intact index is used as it is
        out[fmt] = (str(path), idx_dir, blob, (members, contents))
    return out


@FUZZ
@given(fmt=st.sampled_from(["tar", "tgz"]),
       flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
                      min_size=1, max_size=4), cut=st.one_of(st.none(), st.floats(0, 1)))
def test_damaged_index_is_never_used(indexed, fmt, flips, cut):
    path, idx_dir, blob, truth = indexed[fmt]
    buf = bytearray(blob)
    for where, xor in flips:
        buf[int(where * len(buf))] ^= xor
    if cut is not None:
        del buf[int(cut * len(buf)):]
    assume(buf != blob)  # flips that cancel out leave the intact index
    fuzzcheck.check_index(bytes(buf), path, idx_dir, truth, sealed=False)


values = st.one_of(st.integers(-(1 << 63), (1 << 63) - 1), st.binary(max_size=64),
                   st.text(max_size=8), st.none(), st.booleans(),
                   st.lists(st.integers(-3, 3), max_size=3))


@st.composite
def forged_fields(draw, fields):
    """The index body's fields with one or two of them, or of their entries, replaced."""
    fields = list(fields)
    for _ in range(draw(st.integers(1, 2))):
        i = draw(st.integers(0, len(fields) - 1))
        if i in (5, 6) and isinstance(fields[i], bytes) and not len(fields[i]) % 8 \
                and draw(st.booleans()):                 # one offset or size
            col = array.array("q")
            col.frombytes(fields[i])
            if col:
                col[draw(st.integers(0, len(col) - 1))] = draw(st.integers(-(1 << 63), (1 << 63) - 1))
            fields[i] = col.tobytes()
        elif i == 4 and isinstance(fields[4], (tuple, list)) and fields[4] and draw(st.booleans()):
            names_ = list(fields[4])                     # one name
            names_[draw(st.integers(0, len(names_) - 1))] = draw(st.one_of(st.text(max_size=5000), values))
            fields[4] = names_
        else:
            fields[i] = draw(values)
    return fields


@FUZZ
@given(fmt=st.sampled_from(["tar", "tgz"]), data=st.data())
def test_forged_index_stays_inside_the_shard(indexed, fmt, data):
    path, idx_dir, blob, truth = indexed[fmt]
    body = blob[len(index._MAGIC) + index._DIGEST:]
    fields = data.draw(forged_fields(msgpack.unpackb(body, use_list=False)))
    forged = index.seal(msgpack.packb(fields))
    fuzzcheck.check_index(forged, path, idx_dir, truth, sealed=True)
