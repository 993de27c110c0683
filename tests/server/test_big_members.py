"""A 1 GiB member of a .tgz shard, served by a real node through GetBatch (TAR by the emit
loop, TGZ by the iterated writers) and by GET ?archpath=: right bytes, and the worker's peak
memory stays small. A ZIP bomb is refused before the status line."""
import gzip
import hashlib
import random
import tarfile
import zlib

import pytest
import requests

from tests.support.nodes import Node, serve_argv
from tests.archive.tarhelp import bomb

GiB, MiB = 1 << 30, 1 << 20
PERIOD = 16411   # prime: the content is periodic, but never at a power-of-two shift
PEAK_LIMIT = 96 * MiB


def _tar_block(name, size):
    ti = tarfile.TarInfo(name)
    ti.size = size
    return ti.tobuf(format=tarfile.GNU_FORMAT)


@pytest.fixture(scope="module")
def big_shard(tmp_path_factory):
    """(path of the .tgz, sha256 of its member big.bin); a.txt before it, z.txt after it.

    big.bin is a random pattern of PERIOD bytes repeated for 1 GiB: compressible, not zeros.
    The shard is concatenated gzip members (valid gzip) so that one compressed piece of a
    whole number of periods serves every repetition: built in a second."""
    pattern = random.Random(11).randbytes(PERIOD)
    piece = pattern * 64
    k, rest = divmod(GiB, len(piece))
    packed = gzip.compress(piece, 6)
    digest = hashlib.sha256()
    for _ in range(k):
        digest.update(piece)
    digest.update(piece[:rest])
    path = tmp_path_factory.mktemp("big") / "big.tgz"
    with open(path, "wb") as f:
        f.write(gzip.compress(_tar_block("a.txt", 5) + b"hello".ljust(512, b"\0")
                              + _tar_block("big.bin", GiB)))
        f.write(packed * k)
        f.write(gzip.compress(piece[:rest] + _tar_block("z.txt", 3) + b"end".ljust(512, b"\0")
                              + bytes(1024)))
    return path, digest.hexdigest()


@pytest.fixture(scope="module")
def lone_node(tmp_path_factory):
    """A node with one worker process, so its peak RSS is this test's."""
    d = tmp_path_factory.mktemp("bignode")
    n = Node(d / "data", d / "server.log", serve_argv(workers=1, threads=2))
    yield n
    n.stop()


def worker_peaks(node):
    """VmHWM of each worker process of the node (the children of gunicorn's arbiter)."""
    pid = node.proc.pid
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        children = [int(p) for p in f.read().split()]
    peaks = []
    for child in children:
        with open(f"/proc/{child}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) * 1024)
    assert peaks
    return peaks


class _Exact:
    """Reads exact byte counts from an iterator of chunks."""

    def __init__(self, chunks):
        self.chunks = chunks
        self.buf = b""

    def read(self, n, sink=None):
        out = []
        while n:
            while not self.buf:
                self.buf = next(self.chunks, None)
                if self.buf is None:
                    raise EOFError(f"{n} bytes missing")
            take = self.buf[:n]
            self.buf = self.buf[len(take):]
            n -= len(take)
            if sink is not None:
                sink(take)
            else:
                out.append(take)
        return b"".join(out)


def _inflated(chunks):
    dec = zlib.decompressobj(31)
    for chunk in chunks:
        while chunk:
            out = dec.decompress(chunk, 4 * MiB)
            chunk = dec.unconsumed_tail
            yield out
    yield dec.flush()


def _members_of_stream(chunks):
    """{name: data, or sha256 for a big member} of a streamed TAR, checking its end."""
    src = _Exact(chunks)
    out = {}
    while True:
        block = src.read(512)
        if block == bytes(512):
            assert src.read(512) == bytes(512)
            return out
        ti = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        if ti.size < MiB:
            out[ti.name] = src.read(ti.size)
        else:
            digest = hashlib.sha256()
            src.read(ti.size, digest.update)
            out[ti.name] = digest.hexdigest()
        src.read(-ti.size % 512)


@pytest.fixture(scope="module")
def served(lone_node, big_shard):
    base = f"{lone_node.url}/v1"
    assert requests.post(f"{base}/buckets/big?provider=ais", json={"action": "create-bck"}).ok
    path, digest = big_shard
    with open(path, "rb") as f:
        assert requests.put(f"{base}/objects/big/big.tgz?provider=ais", data=f).ok
    return base, digest


@pytest.mark.parametrize("mime", [".tar", ".tgz"])
def test_getbatch_streams_the_member(lone_node, served, mime):
    base, digest = served
    body = {"in": [{"objname": "big.tgz", "archpath": "z.txt"},
                   {"objname": "big.tgz", "archpath": "big.bin"},
                   {"objname": "big.tgz", "archpath": "a.txt"}], "mime": mime, "strm": True}
    with requests.get(f"{base}/ml/moss/big", json=body, stream=True, timeout=300) as r:
        assert r.status_code == 200, r.text
        if mime == ".tar":
            assert int(r.headers["Content-Length"]) == 3 * 512 + GiB + 2 * 512 + 1024
        chunks = r.iter_content(4 * MiB)
        got = _members_of_stream(chunks if mime == ".tar" else _inflated(chunks))
    assert got == {"big/big.tgz/z.txt": b"end", "big/big.tgz/big.bin": digest,
                   "big/big.tgz/a.txt": b"hello"}
    assert max(worker_peaks(lone_node)) < PEAK_LIMIT


def test_object_get_archpath_streams_the_member(lone_node, served):
    base, digest = served
    with requests.get(f"{base}/objects/big/big.tgz?provider=ais&archpath=big.bin", stream=True,
                      timeout=300) as r:
        assert r.status_code == 200 and int(r.headers["Content-Length"]) == GiB
        h = hashlib.sha256()
        for chunk in r.iter_content(MiB):
            h.update(chunk)
    assert h.hexdigest() == digest
    assert max(worker_peaks(lone_node)) < PEAK_LIMIT


def test_a_zip_bomb_is_refused_before_the_status_line(lone_node, served):
    base, _ = served
    blob = bomb("zip", 5 * GiB, crc=False)       # over the default max_inflate of 4 GiB
    assert len(blob) < 8 * MiB
    assert requests.put(f"{base}/objects/big/bomb.zip?provider=ais", data=blob).ok
    r = requests.get(f"{base}/objects/big/bomb.zip?provider=ais&archpath=bomb", timeout=60)
    assert r.status_code == 400 and "max_inflate" in r.json()["message"]
    r = requests.get(f"{base}/ml/moss/big", json={"in": [{"objname": "bomb.zip",
                                                          "archpath": "bomb"}]}, timeout=60)
    assert r.status_code == 400 and "bomb.zip" in r.json()["message"]
    assert "max_inflate" in r.json()["message"]
    assert max(worker_peaks(lone_node)) < PEAK_LIMIT
    assert requests.get(f"{base}/objects/big/big.tgz?provider=ais&archpath=a.txt").content \
        == b"hello"
