"""open_shard: a path or an open fd (taken over, closed on close() and on a failed open); only
regular files are shards."""
import errno
import os
import socket
import zipfile

import pytest

from getbatch.archive import CorruptArchive, NotAnArchive, memory, open_shard
from getbatch.archive.tarshard import CompressedTarShard, TarShard
from getbatch.archive.zipshard import ZipShard
from fuzzcheck import bounded
from tarhelp import make_tar, write_shard

TAR = make_tar([("a", b"alpha"), ("d/b", b"beta" * 300)])


def is_closed(fd):
    try:
        os.fstat(fd)
    except OSError as exc:
        return exc.errno == errno.EBADF
    return False


def shard_files(tmp_path):
    out = {fmt: write_shard(tmp_path, "s", TAR, fmt) for fmt in ("tar", "tgz", "tar.lz4")}
    out["zip"] = tmp_path / "s.zip"
    with zipfile.ZipFile(out["zip"], "w") as z:
        z.writestr("a", b"alpha")
        z.writestr("d/b", b"beta" * 300)
    return out


@pytest.mark.parametrize("fmt,cls", [("tar", TarShard), ("tgz", CompressedTarShard),
                                     ("tar.lz4", CompressedTarShard), ("zip", ZipShard)])
def test_fd_is_taken_over_and_closed(tmp_path, fmt, cls):
    path = shard_files(tmp_path)[fmt]
    fd = os.open(path, os.O_RDONLY)
    sh = open_shard(fd, name="bucket/obj")
    assert isinstance(sh, cls) and sh.fileno() == fd and sh.path is None
    assert sh.read_many(["d/b", "a"]) == [b"beta" * 300, b"alpha"]
    assert sh.identity.ino == os.stat(path).st_ino
    sh.close()
    assert is_closed(fd)


def test_fd_shard_errors_name_the_shard(tmp_path):
    fd = os.open(write_shard(tmp_path, "s", TAR), os.O_RDONLY)
    with open_shard(fd) as sh, pytest.raises(KeyError, match=f"<fd {fd}>"):
        sh.read("missing")
    fd = os.open(write_shard(tmp_path, "s", TAR), os.O_RDONLY)
    with open_shard(fd, name="b/s.tar") as sh, pytest.raises(KeyError, match="b/s.tar"):
        sh.read("missing")


@pytest.mark.parametrize("content", [b"", b"not an archive at all" * 40, TAR[:1100]],
                         ids=["empty", "text", "truncated"])
def test_failed_open_closes_the_fd(tmp_path, content):
    path = tmp_path / "bad.tar"
    path.write_bytes(content)
    memory.DEFAULT.clear()
    fd = os.open(path, os.O_RDONLY)
    with pytest.raises((NotAnArchive, CorruptArchive)):
        open_shard(fd, name="bad.tar")
    assert is_closed(fd)


@pytest.mark.parametrize("cls", [TarShard, CompressedTarShard, ZipShard])
def test_reader_classes_close_a_handed_over_fd_on_failure(tmp_path, cls):
    path = tmp_path / "junk"
    path.write_bytes(b"junk" * 1000)  # no format at all: each reader refuses it when opened
    fd = os.open(path, os.O_RDONLY)
    with pytest.raises((NotAnArchive, CorruptArchive)):
        cls(fd)
    assert is_closed(fd)


def non_regular(tmp_path, kind):
    if kind == "directory":
        d = tmp_path / "dir.tar"
        d.mkdir()
        return d
    if kind == "fifo":
        p = tmp_path / "fifo.tar"
        os.mkfifo(p)
        return p
    return "/dev/zero"


@pytest.mark.parametrize("kind", ["directory", "fifo", "device"])
def test_non_regular_paths_are_not_archives(tmp_path, kind):
    path = non_regular(tmp_path, kind)
    with bounded(), pytest.raises(NotAnArchive, match="is (a directory|not a regular file)"):
        open_shard(path, name="x.tar")


@pytest.mark.parametrize("kind", ["directory", "fifo", "device", "socket"])
def test_non_regular_fds_are_not_archives_and_are_closed(tmp_path, kind):
    if kind == "socket":
        sock = socket.socket()
        fd = sock.detach()
    else:
        path = non_regular(tmp_path, kind)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with bounded(), pytest.raises(NotAnArchive):
        open_shard(fd, name="x.tar")
    assert is_closed(fd)


@pytest.mark.parametrize("cls", [TarShard, ZipShard])
def test_reader_classes_refuse_non_regular_files(tmp_path, cls):
    with bounded(), pytest.raises(NotAnArchive):
        cls(non_regular(tmp_path, "fifo"))


def test_version_must_be_a_string(tmp_path):
    fd = os.open(write_shard(tmp_path, "s", TAR), os.O_RDONLY)
    with pytest.raises(TypeError, match="version"):
        open_shard(fd, version=7)
    assert is_closed(fd)
