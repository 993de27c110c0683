"""Compressed TAR shards (.tgz, .tar.gz, .tar.lz4): one decompression pass per read_many call."""
import gzip
import tarfile
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from getbatch.archive import CorruptArchive, MemberNotFound, memory, open_shard
from getbatch.archive import tarshard
from tarhelp import compress, make_tar, special, text, write_shard

COMPRESSED = ["tgz", "tar.lz4"]


def sample(n=40, fmt=tarfile.GNU_FORMAT):
    entries = [(f"dir/sample_{i:04d}.txt", text(300 * (i % 7) + i, seed=i)) for i in range(n)]
    entries.insert(3, special("dir", tarfile.DIRTYPE))
    entries.insert(5, ("p" * 130 + "/long.txt", b"long name"))
    return entries, make_tar(entries, fmt)


def contents(entries):
    return {e[0]: e[1] for e in entries if not isinstance(e, tarfile.TarInfo)}


@pytest.fixture(params=["default", "zlib"])
def inflater(request, monkeypatch):
    """Runs a test with the preferred gzip inflater (ISA-L when installed) and with zlib."""
    if request.param == "zlib":
        monkeypatch.setattr(tarshard, "_inflate", zlib)
    return request.param


@pytest.fixture
def count_passes(monkeypatch):
    """Counts decompression passes per shard path, and the bytes each one produced."""
    passes = []
    real = tarshard._stream

    def counting(fd, fmt, shard, *rest):
        passes.append([shard, 0])
        for chunk in real(fd, fmt, shard, *rest):
            passes[-1][1] += len(chunk)
            yield chunk

    monkeypatch.setattr(tarshard, "_stream", counting)
    return passes


@pytest.mark.parametrize("fmt", COMPRESSED)
@pytest.mark.parametrize("tarfmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_read_many_cold_and_warm_one_pass(tmp_path, fmt, tarfmt, count_passes, inflater):
    entries, tar = sample(fmt=tarfmt)
    files = contents(entries)
    names = sorted(files, reverse=True) + ["./dir/sample_0003.txt", "dir/sample_0001.txt"]
    want = [files[n.removeprefix("./")] for n in names]
    plain = open_shard(write_shard(tmp_path, "p", tar))
    path = write_shard(tmp_path, "s", tar, fmt)
    with open_shard(path) as sh:
        assert sh.read_many(names) == want   # cold: index built in the same pass
        assert sh.passes == 1
        assert sh.read_many(names[::3]) == want[::3]  # warm
        assert sh.passes == 2
        # the whole stream is one decompressed chunk, which the last pass still holds
        assert sh.read("dir/sample_0010.txt") == files["dir/sample_0010.txt"]
        assert sh.passes == 2
    assert len(count_passes) == 2
    with open_shard(path) as sh:  # index from the LRU: members() needs no pass
        assert sh.members() == plain.members()
        assert sh.passes == 0


@pytest.mark.parametrize("fmt", COMPRESSED)
def test_stops_after_last_needed_member(tmp_path, fmt, count_passes):
    entries = [(f"m{i}", text(200_000, seed=i)) for i in range(30)]  # ~6 MB inflated
    path = write_shard(tmp_path, "big", make_tar(entries), fmt)
    with open_shard(path) as sh:
        sh.members()
        assert sh.read("m0") == entries[0][1]
    full, partial = count_passes[0][1], count_passes[1][1]
    assert partial < full / 3


@pytest.mark.parametrize("fmt", COMPRESSED)
def test_members_first_then_reads(tmp_path, fmt):
    entries, tar = sample()
    path = write_shard(tmp_path, "s", tar, fmt)
    with open_shard(path) as sh:
        assert [m.name for m in sh.members()][:4] == [e[0] if isinstance(e, tuple) else e.name
                                                      for e in entries][:4]
        assert sh.passes == 1
        assert sh.extent("dir/sample_0002.txt") is None
        with pytest.raises(MemberNotFound):
            sh.extent("nope")
        with pytest.raises(MemberNotFound):
            sh.read_many(["dir/sample_0002.txt", "nope"])
        with pytest.raises(MemberNotFound):
            sh.read("dir")  # a directory is never returned
        assert sh.passes == 1  # misses are found from the index, before any inflating


@pytest.mark.parametrize("fmt", COMPRESSED)
def test_missing_member_on_cold_shard(tmp_path, fmt):
    _, tar = sample(5)
    with open_shard(write_shard(tmp_path, "s", tar, fmt)) as sh:
        with pytest.raises(MemberNotFound) as exc:
            sh.read_many(["dir/sample_0001.txt", "missing"])
        assert "missing" in str(exc.value) and sh.passes == 1


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(fmt=st.sampled_from(COMPRESSED), out_chunk=st.integers(1, 5000),
       picks=st.lists(st.integers(0, 44), min_size=1, max_size=20))
def test_chunk_boundaries_anywhere(tmp_path, monkeypatch, fmt, out_chunk, picks):
    """Headers, PAX records and member data split across decompressed chunks at any point."""
    monkeypatch.setattr(tarshard, "_OUT_CHUNK", out_chunk)
    entries, tar = sample(fmt=tarfile.PAX_FORMAT)
    files = contents(entries)
    names = sorted(files)
    wanted = [names[i % len(names)] for i in picks]
    path = write_shard(tmp_path, "c", tar, fmt)
    with open_shard(path) as sh:
        assert sh.read_many(wanted) == [files[n] for n in wanted]
        assert sh.read_many(wanted[::-1]) == [files[n] for n in wanted[::-1]]
        plain = tarshard.tarscan.scan(tar)
        assert sh.members() == plain


def test_tar_gz_extension_and_concatenated_gzip_members(tmp_path, inflater):
    body = make_tar([("a", b"first")])[:1024]  # header + data block, no end: the stream goes on
    tail = make_tar([("b", b"second")])
    path = tmp_path / "multi.tar.gz"
    path.write_bytes(gzip.compress(body) + gzip.compress(tail))
    memory.DEFAULT.clear()
    with open_shard(path) as sh:
        assert sh.format == "tgz"
        assert sh.read_many(["b", "a"]) == [b"second", b"first"]


def test_trailing_garbage_after_gzip_is_ignored(tmp_path):
    tar = make_tar([("a", b"x")])
    path = tmp_path / "g.tgz"
    path.write_bytes(gzip.compress(tar) + b"\0" * 100)
    memory.DEFAULT.clear()
    with open_shard(path) as sh:
        assert sh.read("a") == b"x"


@pytest.mark.parametrize("fmt", COMPRESSED)
def test_empty_member_and_zero_size(tmp_path, fmt):
    tar = make_tar([("empty", b""), ("one", b"1")])
    with open_shard(write_shard(tmp_path, "z", tar, fmt)) as sh:
        assert sh.read_many(["empty", "one", "empty"]) == [b"", b"1", b""]


@pytest.mark.parametrize("fmt", COMPRESSED)
def test_truncated_compressed_stream(tmp_path, fmt, inflater):
    _, tar = sample()
    blob = compress(tar, fmt)
    path = tmp_path / ("t." + fmt)
    path.write_bytes(blob[: len(blob) // 2])
    memory.DEFAULT.clear()
    with open_shard(path) as sh:
        with pytest.raises(CorruptArchive) as exc:
            sh.members()
        assert str(path) in str(exc.value)


def test_compressed_non_tar_payload(tmp_path):
    path = tmp_path / "notatar.tgz"
    path.write_bytes(gzip.compress(b"just some text, not a tar archive" * 40))
    memory.DEFAULT.clear()
    with pytest.raises(CorruptArchive):
        open_shard(path).members()
    empty = tmp_path / "empty.tgz"
    empty.write_bytes(gzip.compress(b""))
    with pytest.raises(CorruptArchive, match="empty"):
        open_shard(empty).read_many(["x"])


def test_tarfile_reads_what_we_read(tmp_path):
    entries, tar = sample(20, tarfile.PAX_FORMAT)
    path = write_shard(tmp_path, "x", tar, "tgz")
    with tarfile.open(path, "r:gz") as t, open_shard(path) as sh:
        regs = [m for m in t.getmembers() if m.isreg()]
        assert sh.read_many([m.name for m in regs]) == [t.extractfile(m).read() for m in regs]
        assert [(m.name, m.offset) for m in sh.members() if m.kind == "file"] == [
            (m.name, m.offset_data) for m in regs]
