"""TAR header packing: tarfile reads every header back, the Cython and pure twins agree byte for byte."""
import io
import tarfile

import pytest
from hypothesis import given, settings, strategies as st

from getbatch.archive import _accel

PURE = _accel.implementations("tarheader")["python"]
CY = _accel.implementations("tarheader").get("cython")  # None in a pure build
IMPLS = [PURE] + ([CY] if CY is not None else [])
GiB = 1 << 30

segment = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00/"),
                  min_size=1, max_size=40)
names = st.one_of(
    st.lists(segment, min_size=1, max_size=30).map("/".join),
    st.sampled_from([99, 100, 101, 154, 155, 156, 255, 256, 1000]).map(lambda n: "n" * n),
    st.integers(1, 60).map(lambda d: "/".join(["dir%d" % i for i in range(d)]) + "/f.bin"),
)
sizes = st.one_of(st.sampled_from([0, 1, 511, 512, 513, 8 ** 11 - 1, 8 ** 11, 9 * GiB, 10 ** 15]),
                  st.integers(0, 1 << 40))


def parse(header):
    """The first TarInfo tarfile's stream mode sees in `header` (data left out: sizes may be huge)."""
    with tarfile.open(fileobj=io.BytesIO(header + bytes(1024)), mode="r|") as tf:
        return tf.next()


@pytest.mark.parametrize("impl", IMPLS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
@settings(max_examples=150, deadline=None)
@given(name=names, size=sizes, mtime=st.integers(0, 8 ** 11 - 1))
def test_tarfile_reads_header(impl, name, size, mtime):
    header = impl.tar_header(name, size, mtime)
    assert len(header) % 512 == 0
    ti = parse(header)
    assert (ti.name, ti.size, ti.mtime, ti.mode, ti.uid, ti.gid) == (name, size, mtime, 0o644, 0, 0)
    assert ti.type == tarfile.REGTYPE and ti.uname == ti.gname == ""
    assert impl.tar_entry_size(name, size) == len(header) + (size + 511) // 512 * 512


@pytest.mark.skipif(CY is None, reason="Cython extension not built")
@settings(max_examples=300, deadline=None)
@given(name=names, size=sizes, mtime=st.integers(0, 1 << 40), mode=st.sampled_from([0o644, 0o600, 0o7777]),
       uid=st.integers(0, 1 << 22), gid=st.integers(0, 1 << 22))
def test_twins_byte_identical(name, size, mtime, mode, uid, gid):
    assert CY.tar_header(name, size, mtime, mode, uid, gid) == PURE.tar_header(name, size, mtime, mode, uid, gid)
    assert CY.tar_entry_size(name, size) == PURE.tar_entry_size(name, size)


@pytest.mark.parametrize("impl", IMPLS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_layout_by_name_length(impl):
    assert len(impl.tar_header("a" * 100, 1)) == 512
    assert len(impl.tar_header("a" * 101, 1)) == 1536          # no '/' to split at: PAX
    split = "p" * 150 + "/" + "n" * 100
    header = impl.tar_header(split, 1)
    assert len(header) == 512 and header[345:495].rstrip(b"\0") == b"p" * 150
    assert len(impl.tar_header("p" * 155 + "/" + "n" * 100, 1)) == 1536   # 256 bytes
    assert len(impl.tar_header("é", 1)) == 1536                 # non-ASCII: PAX path (UTF-8)
    assert b"path=" + "é".encode() in impl.tar_header("é", 1)


@pytest.mark.parametrize("impl", IMPLS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_huge_size_pax_and_base256(impl):
    size = 9 * GiB + 7
    header = impl.tar_header("big.bin", size)
    assert b"size=%d\n" % size in header
    assert header[-512 + 124] == 0x80                           # base-256 marker
    ti = parse(header)
    assert ti.size == size and ti.name == "big.bin"
    assert impl.tar_entry_size("big.bin", size) == len(header) + (size + 511) // 512 * 512


@pytest.mark.parametrize("impl", IMPLS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_fixed_fields_and_determinism(impl):
    header = impl.tar_header("x/y.txt", 4096)
    assert header == impl.tar_header("x/y.txt", 4096)
    assert header[257:265] == b"ustar\x0000" and header[156:157] == b"0"
    assert header[265:329] == bytes(64)                         # uname, gname empty
    assert header[100:148] == b"0000644\x000000000\x000000000\x0000000010000\x0000000000000\x00"
    chk = sum(header[:148]) + 8 * 32 + sum(header[156:])
    assert header[148:156] == b"%06o\x00 " % chk


@pytest.mark.parametrize("impl", IMPLS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_rejects_bad_input(impl):
    for call in (lambda: impl.tar_header("a\0b", 1), lambda: impl.tar_header("a", -1),
                 lambda: impl.tar_entry_size("a", -1), lambda: impl.tar_header("a", 1, -5)):
        with pytest.raises(ValueError):
            call()
