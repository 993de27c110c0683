"""Shard.iter_member: any member, or part of one, in chunks of at most 1 MiB, in every format;
compressed TAR passes are resumed by later reads; ZIP CRC-32 is checked at the end."""
import os
import struct
import tarfile
import zipfile

import pytest

from getbatch.archive import CorruptArchive, open_shard
from getbatch.archive import ShardMemory
from getbatch.archive.member import CHUNK
from tarhelp import bulk, make_tar, write_shard

FORMATS = ["tar", "tgz", "tar.lz4"]
SIZES = [0, 1, 511, 512, 513, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7]


def entries():
    return [(f"m{i:02d}", bulk(size, seed=i)) for i, size in enumerate(SIZES)]


def zip_shard(tmp_path, items, method):
    path = tmp_path / f"s{method}.zip"
    with zipfile.ZipFile(path, "w", method) as zf:
        for name, data in items:
            zf.writestr(name, data)
    return path


def shards(tmp_path, items):
    tar = make_tar(items)
    out = [write_shard(tmp_path, "s", tar, fmt) for fmt in FORMATS]
    return out + [zip_shard(tmp_path, items, zipfile.ZIP_STORED),
                  zip_shard(tmp_path, items, zipfile.ZIP_DEFLATED)]


def test_whole_members_and_ranges_in_bounded_chunks(tmp_path):
    items = entries()
    for path in shards(tmp_path, items):
        with open_shard(path) as sh:
            for name, data in items:
                chunks = list(sh.iter_member(name))
                assert all(0 < len(c) <= CHUNK and type(c) is bytes for c in chunks), path
                assert b"".join(chunks) == data, (path, name)
                for off, n in ((0, 0), (len(data), 0), (len(data) // 3, len(data) // 2),
                               (max(len(data) - 5, 0), None)):
                    want = data[off:] if n is None else data[off:off + n]
                    assert b"".join(sh.iter_member(name, off, n)) == want, (path, name, off, n)


def test_range_outside_the_member_is_refused_before_iterating(tmp_path):
    items = entries()[:3]
    for path in shards(tmp_path, items):
        with open_shard(path) as sh:
            for off, n in ((-1, 1), (0, 2), (2, None), (1, 1)):
                with pytest.raises(ValueError):
                    sh.iter_member("m01", off, n)   # one byte long


@pytest.mark.parametrize("fmt", ["tgz", "tar.lz4"])
def test_reads_in_file_order_continue_one_pass(tmp_path, fmt):
    items = [(f"m{i}", bulk(700_000, seed=i)) for i in range(8)]   # ~5.6 MB: several chunks
    path = write_shard(tmp_path, "s", make_tar(items), fmt)
    with open_shard(path) as sh:
        sh.members()
        assert sh.passes == 1                   # the index scan
        for name, data in items[:4]:
            assert b"".join(sh.iter_member(name)) == data
        assert sh.read_many(["m5", "m4"]) == [items[5][1], items[4][1]]
        assert b"".join(sh.iter_member("m7", 10, 1000)) == items[7][1][10:1010]
        assert sh.passes == 2                   # one pass served all of the above
        assert sh.read("m0") == items[0][1]     # behind it: a new pass
        assert sh.passes == 3


@pytest.mark.parametrize("fmt", ["tgz", "tar.lz4"])
def test_interleaved_readers_of_one_shard(tmp_path, fmt):
    items = [(f"m{i}", bulk(1_500_000, seed=i)) for i in range(4)]
    path = write_shard(tmp_path, "s", make_tar(items), fmt)
    with open_shard(path) as sh:
        readers = {"m1": sh.iter_member("m1"), "m0": sh.iter_member("m0")}
        got = {"m1": b"", "m0": b""}
        while readers:
            for name, it in list(readers.items()):
                chunk = next(it, None)
                if chunk is None:
                    del readers[name]
                else:
                    got[name] += chunk
                assert b"".join(sh.iter_member("m3", 5, 50)) == items[3][1][5:55]
        assert got == {"m1": items[1][1], "m0": items[0][1]}


def test_parked_passes_are_bounded(tmp_path):
    mine = ShardMemory(parked=2)
    items = [("a", bulk(2_500_000, seed=1)), ("b", b"bb")]
    tar = make_tar(items)
    opened = [open_shard(write_shard(tmp_path, f"s{i}", tar, "tgz"), memory=mine)
              for i in range(5)]
    try:
        for sh in opened:
            assert b"".join(sh.iter_member("a", 0, 10)) == items[0][1][:10]
        assert mine.parked() == opened[-2:]
    finally:
        for sh in opened:
            sh.close()
    assert mine.parked() == []


@pytest.mark.parametrize("fmt", ["tgz", "tar.lz4"])
def test_truncated_stream_raises_while_iterating(tmp_path, fmt):
    data = os.urandom(3 * CHUNK)                 # incompressible: truncation cuts into it
    path = write_shard(tmp_path, "t", make_tar([("x", data)]), fmt)
    blob = path.read_bytes()
    with open_shard(path) as sh:
        sh.members()                              # indexed while whole
        path.write_bytes(blob[:len(blob) // 2])   # same inode: the index stays in use
        got = bytearray()
        with pytest.raises(CorruptArchive):
            for chunk in sh.iter_member("x"):
                got += chunk
        assert data.startswith(bytes(got)) and len(got) < len(data)


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_zip_crc_mismatch_raises_before_the_last_bytes(tmp_path, method):
    """The check runs at the end of the member; its last chunk is held back until then, so a
    sender with the size announced sends short: the damage is detectable downstream."""
    data = bulk(3 * CHUNK + 5, seed=3)
    path = zip_shard(tmp_path, [("x", data)], method)
    blob = bytearray(path.read_bytes())
    # damage the CRC-32 in the central directory (the copy the reader trusts)
    cd = blob.rindex(b"PK\x01\x02")
    crc = struct.unpack_from("<I", blob, cd + 16)[0]
    struct.pack_into("<I", blob, cd + 16, crc ^ 1)
    path.write_bytes(bytes(blob))
    with open_shard(path) as sh:
        got = bytearray()
        with pytest.raises(CorruptArchive, match="CRC-32"):
            for chunk in sh.iter_member("x"):
                got += chunk
        assert len(got) < len(data) and data.startswith(bytes(got))
        if method == zipfile.ZIP_DEFLATED:
            with pytest.raises(CorruptArchive, match="CRC-32"):
                b"".join(sh.iter_member("x", 10, 10))  # a part still inflates (and checks) all
        else:  # a part of a stored member is a plain range, as extent() serves it
            assert b"".join(sh.iter_member("x", 10, 10)) == data[10:20]


def test_zip_deflated_member_bigger_than_its_directory_entry(tmp_path):
    """A directory that understates the size never makes the reader inflate past it."""
    data = bulk(2 * CHUNK, seed=4)
    path = zip_shard(tmp_path, [("x", data)], zipfile.ZIP_DEFLATED)
    blob = bytearray(path.read_bytes())
    cd = blob.rindex(b"PK\x01\x02")
    struct.pack_into("<I", blob, cd + 24, 1000)   # uncompressed size
    path.write_bytes(bytes(blob))
    with open_shard(path) as sh:
        got = 0
        with pytest.raises(CorruptArchive):
            for chunk in sh.iter_member("x"):
                got += len(chunk)
        assert got <= 1000


def test_extract_streams_members(tmp_path):
    items = [("d/a", bulk(2 * CHUNK + 3, seed=1)), ("b", b"small"), ("d/c", b"")]
    path = write_shard(tmp_path, "s", make_tar(items), "tgz")
    from getbatch.archive import extract_to
    with open_shard(path) as sh:
        out = extract_to(sh, tmp_path / "x", ["b", "d/a", "d/c"])
        assert sh.passes == 2                     # the index scan, one pass for all three
    assert [open(p, "rb").read() for p in out] == [b"small", items[0][1], b""]
    with tarfile.open(path) as tf:
        assert tf.extractfile("d/a").read() == items[0][1]
