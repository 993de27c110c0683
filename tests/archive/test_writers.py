"""Output writers: every format reads back through tarfile/zipfile/libarchive, deterministically."""
import io
import os
import shutil
import subprocess
import tarfile
import zipfile

try:
    import libarchive
except (ImportError, OSError) as exc:  # libarchive-c needs the system library
    libarchive = None
    _NO_LIBARCHIVE = f"needs the system libarchive (Debian package libarchive13): {exc}"
import lz4.frame
import pytest
from hypothesis import given, settings, strategies as st

from getbatch.archive import ArchiveError, open_writer, tar_entry_size, writers

FORMATS = ["tar", "tgz", "tar.gz", "tar.lz4", "zip", "zip+deflate"]

# no backslash: libarchive reads it as a path separator in ZIP names
segment = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00/\\"),
                  min_size=1, max_size=30)
names = st.one_of(
    st.lists(segment, min_size=1, max_size=12).map("/".join),
    st.sampled_from([99, 100, 101, 255, 256, 1000]).map(lambda n: "d/" + "n" * (n - 2)),
    st.integers(1, 40).map(lambda d: "/".join("lvl%d" % i for i in range(d)) + "/x.bin"),
)
sizes = st.one_of(st.sampled_from([0, 1, 511, 512, 513, 4096, 300_000]), st.integers(0, 20_000))
items_strategy = st.lists(st.tuples(names, sizes, st.sampled_from(["add", "stream", "file"])),
                          min_size=0, max_size=8)


class CountingSink:
    def __init__(self):
        self.parts = []

    def write(self, data):
        self.parts.append(bytes(data))

    def getvalue(self):
        return b"".join(self.parts)


def payload(i, size):
    return (b"%08d" % i * (size // 8 + 1))[:size]


def write_archive(fmt, items, tmp_path=None, **kw):
    """Write (name, size, how) items; returns (archive bytes, [(name, data)])."""
    sink = CountingSink()
    expected = []
    fd = -1
    if tmp_path is not None:
        src = tmp_path / "src.bin"
        src.write_bytes(b"S" * 7 + b"".join(payload(i, s) for i, (_, s, _) in enumerate(items)))
        fd = os.open(src, os.O_RDONLY)
    try:
        kind = "zip" if fmt.startswith("zip") else fmt
        with open_writer(kind, sink, compress_zip=fmt == "zip+deflate", **kw) as w:
            pos = 7
            for i, (name, size, how) in enumerate(items):
                data = payload(i, size)
                if how == "add":
                    w.add(name, bytearray(data) if i % 2 else data)
                elif how == "stream":
                    w.add_stream(name, size, [data[j:j + 1000] for j in range(0, size, 1000)])
                else:
                    w.add_file(name, fd, pos, size)
                pos += size
                expected.append((name, data))
    finally:
        if fd >= 0:
            os.close(fd)
    return sink.getvalue(), expected


def read_back(fmt, blob):
    if fmt.startswith("zip"):
        with zipfile.ZipFile(io.BytesIO(blob)) as zf:
            assert zf.testzip() is None
            return [(i.filename, zf.read(i)) for i in zf.infolist()]
    if fmt == "tar.lz4":
        blob = lz4.frame.decompress(blob)
    got = []
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r|*") as tf:
        for ti in tf:
            assert ti.isreg()
            got.append((ti.name, tf.extractfile(ti).read()))
    return got


def read_libarchive(blob):
    if libarchive is None:
        pytest.skip(_NO_LIBARCHIVE)
    with libarchive.memory_reader(blob) as arc:
        return [(e.pathname, b"".join(e.get_blocks())) for e in arc]


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=25, deadline=None)
@given(items=items_strategy)
def test_round_trip(fmt, items, tmp_path_factory):
    blob, expected = write_archive(fmt, items, tmp_path_factory.mktemp("w"))
    assert read_back(fmt, blob) == expected
    assert read_libarchive(blob) == expected


@pytest.mark.parametrize("fmt", FORMATS)
def test_deterministic(fmt, tmp_path):
    items = [("a/b.txt", 10, "add"), ("é" * 60, 70_000, "stream"), ("c", 0, "file")]
    first, _ = write_archive(fmt, items, tmp_path, mtime=1_700_000_000)
    again, _ = write_archive(fmt, items, tmp_path, mtime=1_700_000_000)
    assert first == again


def test_tar_length_known_in_advance():
    items = [("x" * 120, 5, "add"), ("é.bin", 512, "add"), ("a/b", 0, "stream"), ("n" * 300, 3, "add")]
    blob, _ = write_archive("tar", items)
    assert len(blob) == sum(tar_entry_size(n, s) for n, s, _ in items) + 1024


def test_stream_mode_tarfile_reads_tgz():
    blob, expected = write_archive("tgz", [("a", 3, "add"), ("b", 70_000, "stream")])
    assert blob[:8] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00"     # gzip, no name, mtime 0
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r|gz") as tf:
        assert [(t.name, tf.extractfile(t).read()) for t in tf] == expected


def test_lz4_frame_uses_256k_blocks():
    blob, _ = write_archive("tar.lz4", [("a", 600_000, "add")])
    assert blob[:4] == b"\x04\x22\x4d\x18" and blob[5] & 0x70 == 0x50


def test_sink_sees_few_large_writes():
    sink = CountingSink()
    with open_writer("tar", sink) as w:
        for i in range(2000):
            w.add("f%d" % i, b"x" * 1000)
    assert len(sink.parts) <= 4
    assert all(len(p) >= (1 << 20) - 4096 for p in sink.parts[:-1])


@pytest.mark.parametrize("fmt", ["tar", "zip"])
def test_failed_batch_writes_no_archive_end(fmt):
    sink = CountingSink()
    with pytest.raises(RuntimeError):
        with open_writer(fmt, sink) as w:
            w.add("a", b"x" * 10)
            raise RuntimeError("source failed")
    blob = sink.getvalue()
    assert not blob.endswith(bytes(1024)) and b"PK\x05\x06" not in blob


@pytest.mark.parametrize("fmt", ["tar", "zip"])
def test_stream_and_file_size_mismatch(fmt, tmp_path):
    src = tmp_path / "short"
    src.write_bytes(b"abc")
    w = open_writer(fmt, CountingSink())
    with pytest.raises(ArchiveError):
        w.add_stream("s", 5, [b"abc"])
    w = open_writer(fmt, CountingSink())
    with pytest.raises(ArchiveError):
        w.add_stream("s", 2, [b"abc"])
    fd = os.open(src, os.O_RDONLY)
    try:
        w = open_writer(fmt, CountingSink())
        with pytest.raises(ArchiveError):
            w.add_file("f", fd, 0, 10)
    finally:
        os.close(fd)


def test_unknown_format_and_closed_writer():
    with pytest.raises(ValueError):
        open_writer("rar", CountingSink())
    w = open_writer(".tar", CountingSink())
    w.close()
    w.close()
    with pytest.raises(ValueError):
        w.add("a", b"")


def test_zip64_entries(monkeypatch):
    # real ZIP64 sizes need 4 GiB; forcing the per-entry decision exercises the same layout
    monkeypatch.setattr(writers.ZipWriter, "_zip64_needed", lambda self, size: True)
    items = [("a.txt", 100, "add"), ("b/c", 0, "add"), ("d", 5000, "stream")]
    for fmt in ("zip", "zip+deflate"):
        blob, expected = write_archive(fmt, items)
        assert read_back(fmt, blob) == expected
        assert read_libarchive(blob) == expected


def test_zip64_entry_count():
    sink = CountingSink()
    with open_writer("zip", sink) as w:
        for i in range(0x10000 + 5):
            w.add("%d" % i, b"")
    with zipfile.ZipFile(io.BytesIO(sink.getvalue())) as zf:
        names = zf.namelist()
    assert len(names) == 0x10005 and names[-1] == "65540"


def test_zip_metadata():
    sink = CountingSink()
    with open_writer("zip", sink, mtime=1_700_000_000, mode=0o600) as w:
        w.add("é.txt", b"hi")
        w.add("old", b"", mtime=0)
    with zipfile.ZipFile(io.BytesIO(sink.getvalue())) as zf:
        first, second = zf.infolist()
    assert first.flag_bits & 0x808 == 0x808 and first.compress_type == zipfile.ZIP_STORED
    assert first.date_time == (2023, 11, 14, 22, 13, 20) and first.external_attr >> 16 == 0o100600
    assert second.date_time == (1980, 1, 1, 0, 0, 0)


@pytest.mark.skipif(shutil.which("tar") is None, reason="GNU tar not installed")
def test_gnu_tar_lists_output(tmp_path):
    items = [("short", 1, "add"), ("deep/" * 40 + "f", 2, "add"), ("ü/" + "n" * 300, 3, "add")]
    blob, expected = write_archive("tar", items)
    path = tmp_path / "out.tar"
    path.write_bytes(blob)
    out = subprocess.run(["tar", "-tf", str(path)], capture_output=True, check=True,
                         env={**os.environ, "LC_ALL": "C.UTF-8"})
    assert out.stdout.decode().splitlines() == [n for n, _ in expected]


def test_sink_holding_views_never_sees_them_change():
    copies, kept_views, kept_slices = [], [], []

    class Hoarder:
        def write(self, data):
            copies.append(bytes(data))
            kept_views.append(data)
            if isinstance(data, memoryview):
                kept_slices.append(data[:])

    with open_writer("tar", Hoarder()) as w:
        for i in range(3000):
            w.add("f%d" % i, b"%d" % i * 200)
    assert [bytes(s) for s in kept_slices] == copies[:len(kept_slices)]
    assert len(kept_slices) >= 2
    with pytest.raises(ValueError):
        bytes(kept_views[0])                  # released after the write call
    with tarfile.open(fileobj=io.BytesIO(b"".join(copies)), mode="r|") as tf:
        assert sum(1 for _ in tf) == 3000
