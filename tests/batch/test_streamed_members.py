"""Members that need decompression: small ones held in windows, big ones streamed, with the same
bytes through both output paths and in every format; the request's inflate budget and the
inflate cache seen from a batch."""
import hashlib
import io
import json
import os
import random
import sys
import tarfile
import tracemalloc
import zipfile

import lz4.frame
import pytest

from getbatch.archive import InflateLimit, open_writer, tarshard
from getbatch.archive.tarshard import CompressedTarShard
from getbatch.archive.zipshard import ZipShard
from getbatch.batch import plan as plan_mod
from getbatch.batch.assemble import BatchOutput
from getbatch.batch.errors import BadRequest
from getbatch.batch.request import parse
from getbatch.store import LocalStore, Storage

from .emitting import emit_to_file

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "archive"))
from tarhelp import bomb, bulk, compress, make_tar  # noqa: E402

W = 256 << 10            # the window of these tests; members above W/4 are streamed
S = W // 4
SIZES = {"w-1": W - 1, "w": W, "w+1": W + 1, "s-1": S - 1, "s": S, "s+1": S + 1, "empty": 0,
         "tiny": 100, "block": 512, "multi": (5 << 20) // 2 + 3,
         **{f"f{i}": 60_000 + i for i in range(6)}}
MEMBERS = {name: bulk(size, seed=i) for i, (name, size) in enumerate(SIZES.items())}
SHARDS = ("s.tar", "s.tgz", "s.tar.lz4", "s.zip", "stored.zip")
FORMATS = ("tar", "tgz", "tar.lz4", "zip")


HUGE = 16 << 20


def zip_of(items, method=zipfile.ZIP_DEFLATED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in items:
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    st = LocalStore(tmp_path_factory.mktemp("streamed") / "data", fsync=False)
    st.create_bucket("b")
    tar = make_tar(list(MEMBERS.items()))
    blobs = {"s.tar": tar, "s.tgz": compress(tar, "tgz"), "s.tar.lz4": compress(tar, "tar.lz4"),
             "s.zip": zip_of(MEMBERS.items()),
             "stored.zip": zip_of(MEMBERS.items(), zipfile.ZIP_STORED),
             "obj": bulk(3 << 20, seed=99), "small": b"small object"}
    for name, blob in blobs.items():
        st.put("b", name, io.BytesIO(blob), len(blob))
    st.blobs = blobs
    return st


def scenario(seed):
    """Entries and the (name, data) each one must produce: members of every shard in and out
    of file order, duplicates, ranges of big members, objects, a placeholder."""
    rnd = random.Random(seed)
    names = list(MEMBERS)
    entries, want = [], []
    for shard in SHARDS:
        picks = names[:] if seed % 2 else rnd.sample(names, len(names))
        picks += rnd.sample(names, 4)                      # duplicates, anywhere
        for m in picks:
            entries.append({"objname": shard, "archpath": m})
            want.append((f"b/{shard}/{m}", MEMBERS[m]))
        start = rnd.randrange(1, SIZES["multi"] - 10)
        entries.append({"objname": shard, "archpath": "multi", "start": start, "length": -1})
        want.append((f"b/{shard}/multi", MEMBERS["multi"][start:]))
        entries.append({"objname": shard, "archpath": "w+1", "start": 5, "length": 9})
        want.append((f"b/{shard}/w+1", MEMBERS["w+1"][5:14]))
    rnd.shuffle(entries_order := list(range(len(entries))))
    entries = [entries[i] for i in entries_order]
    want = [want[i] for i in entries_order]
    entries += [{"objname": "obj"}, {"objname": "missing"}, {"objname": "small"}]
    return entries, want


def expected(fmt, want):
    """The archive today's writers make of exactly these entries."""
    buf = io.BytesIO()
    with open_writer(fmt, buf) as w:
        for name, data in want:
            w.add(name, data)
    return buf.getvalue()


def run(store, entries, fmt, path, tmp_path, window=W, **kw):
    req = parse(json.dumps({"in": entries, "mime": fmt, "coer": True, "strm": True}).encode(), "b")
    p = plan_mod.build(req, Storage({'ais': store}), max_soft_errs=5, **kw)
    out = BatchOutput(p, fmt, multipart=False, window=window)
    try:
        if path == "iterate":
            chunks = list(out)
            assert all(len(c) <= 2 << 20 for c in chunks)
            return b"".join(chunks)
        target = tmp_path / "emitted"
        n = emit_to_file(out, target)
        body = target.read_bytes()
        assert n == len(body) == out.content_length
        return body
    finally:
        out.close()


@pytest.fixture
def held_sizes(monkeypatch):
    """The biggest member any read_many (a member held whole) was asked for."""
    seen = [0]
    for cls in (CompressedTarShard, ZipShard):
        real = cls.read_many

        def spy(self, names, real=real):
            seen[0] = max([seen[0]] + [self.lookup(n).size for n in names])
            return real(self, names)

        monkeypatch.setattr(cls, "read_many", spy)
    return seen


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("fmt", FORMATS)
def test_bytes_across_window_boundaries_match_the_writers(store, tmp_path, fmt, seed,
                                                          held_sizes):
    entries, want = scenario(seed)
    want = want + [("b/obj", store.blobs["obj"]), ("__404__/b/missing", b""),
                   ("b/small", b"small object")]
    body = run(store, entries, fmt, "iterate", tmp_path)
    if fmt == "tar.lz4":
        # LZ4 frames depend on how the compressor is fed (a member in chunks, or whole):
        # the archive inside is the same
        assert lz4.frame.decompress(body) == lz4.frame.decompress(expected(fmt, want))
    else:
        assert body == expected(fmt, want)
    if fmt == "tar":
        assert run(store, entries, fmt, "emit", tmp_path) == body
        with tarfile.open(fileobj=io.BytesIO(body)) as tf:
            assert [(m.name, tf.extractfile(m).read()) for m in tf.getmembers()] == want
    assert 0 < held_sizes[0] <= S


@pytest.mark.parametrize("path", ["iterate", "emit"])
def test_a_big_member_is_never_held(store, tmp_path, path):
    huge = bulk(HUGE, seed=5)
    if not store.has_bucket("h"):
        store.create_bucket("h")
        for name, blob in (("h.tgz", compress(make_tar([("x", b"x"), ("huge", huge)]), "tgz")),
                           ("h.zip", zip_of([("huge", huge), ("x", b"x")])), ("obj", huge)):
            store.put("h", name, io.BytesIO(blob), len(blob))
    entries = [{"bucket": "h", "objname": "h.tgz", "archpath": "huge"},
               {"bucket": "h", "objname": "h.zip", "archpath": "huge"},
               {"bucket": "h", "objname": "h.tgz", "archpath": "x"},
               {"bucket": "h", "objname": "obj"}]        # a big plain file: streamed too
    want = expected("tar", [("h/h.tgz/huge", huge), ("h/h.zip/huge", huge), ("h/h.tgz/x", b"x"),
                            ("h/obj", huge)])
    run(store, entries, "tar", path, tmp_path)           # warm: indexes built
    req = parse(json.dumps({"in": entries, "strm": True}).encode(), "b")
    digest = hashlib.sha256()
    tracemalloc.start()
    try:
        out = BatchOutput(plan_mod.build(req, Storage({'ais': store})), "tar", multipart=False, window=W)
        if path == "iterate":
            for chunk in out:
                digest.update(chunk)
        else:
            emit_to_file(out, tmp_path / "o")
        out.close()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    if path == "emit":
        digest.update((tmp_path / "o").read_bytes())
    assert digest.digest() == hashlib.sha256(want).digest()
    assert peak < HUGE // 2, peak                # a few chunks of 1 MiB, never the member


def test_default_window_holds_what_fits(store, tmp_path, held_sizes):
    entries, want = scenario(3)
    assert run(store, entries, "tar", "emit", tmp_path, window=32 << 20) == expected(
        "tar", want + [("b/obj", store.blobs["obj"]), ("__404__/b/missing", b""),
                       ("b/small", b"small object")])
    assert held_sizes[0] == SIZES["multi"]       # 2.5 MiB < 8 MiB: read whole


BOMB_EXT = {"tgz": ".tgz", "tar.lz4": ".tar.lz4", "zip": ".zip"}


@pytest.mark.parametrize("fmt", BOMB_EXT)
def test_a_bomb_is_a_bad_request_before_any_byte(store, fmt):
    name = "bomb" + BOMB_EXT[fmt]
    blob = bomb(fmt, 1 << 30)
    store.put("b", name, io.BytesIO(blob), len(blob))
    for _ in range(2):  # cold (the index scan stops) and warm (the planned cost is refused)
        req = parse(json.dumps({"in": [{"objname": name, "archpath": "bomb"}], "coer": True})
                    .encode(), "b")
        with pytest.raises(BadRequest) as ei:
            plan_mod.build(req, Storage({'ais': store}), max_inflate=16 << 20)
        assert name in ei.value.message and "max_inflate" in ei.value.message
        assert "16777216" in ei.value.message
    req = parse(json.dumps({"in": [{"objname": name, "archpath": "bomb", "length": 10}]})
                .encode(), "b")
    p = plan_mod.build(req, Storage({'ais': store}), max_inflate=2 << 30)   # fits a large budget
    assert b"".join(BatchOutput(p, "tar", multipart=False)).count(bytes(10)) >= 1
    p.close()


def test_going_over_the_budget_after_the_status_line_aborts(store, tmp_path):
    """Planning counts one pass to the furthest member; reading B then A needs two."""
    blob = bomb("tgz", 64 << 20, name="A", after=[("B", bytes(16 << 20))])
    limit = 170 << 20   # scan (80 MiB) + one pass to B's end (80 MiB) fits; a second pass not
    for path in ("iterate", "emit"):
        name = f"ab-{path}.tgz"   # each request pays the index scan
        store.put("b", name, io.BytesIO(blob), len(blob))
        entries = [{"objname": name, "archpath": "B"}, {"objname": name, "archpath": "A"}]
        req = parse(json.dumps({"in": entries, "strm": True}).encode(), "b")
        p = plan_mod.build(req, Storage({'ais': store}), max_inflate=limit)
        out = BatchOutput(p, "tar", multipart=False)
        got = bytearray()
        with pytest.raises(InflateLimit):
            if path == "iterate":
                for chunk in out:
                    got += chunk
            else:
                try:
                    emit_to_file(out, tmp_path / "o")
                finally:
                    got = (tmp_path / "o").read_bytes()
        out.close()
        assert (16 << 20) < len(got) < out.content_length   # B went out, A was cut


def test_cached_members_are_sent_from_the_cache_file(store, tmp_path, monkeypatch):
    blob = bomb("tgz", 256 << 20, name="zeros", after=[("x", MEMBERS["multi"]), ("y", b"y")])
    store.put("b", "late.tgz", io.BytesIO(blob), len(blob))
    passes = []
    real = tarshard._stream
    monkeypatch.setattr(tarshard, "_stream", lambda *a: passes.append(a) or real(*a))
    cached = LocalStore(store.data_dir, fsync=False, inflate_cache=1 << 30)
    cache_dir = os.path.join(store.data_dir, ".sys", "inflate-cache")
    entries = [{"objname": "late.tgz", "archpath": "x"}, {"objname": "late.tgz", "archpath": "y"},
               {"objname": "late.tgz", "archpath": "x", "start": 7, "length": 100}]
    want = expected("tar", [("b/late.tgz/x", MEMBERS["multi"]), ("b/late.tgz/y", b"y"),
                            ("b/late.tgz/x", MEMBERS["multi"][7:107])])
    for n_passes in (1, 1):   # the first request decompresses once, the second not at all
        req = parse(json.dumps({"in": entries, "strm": True}).encode(), "b")
        p = plan_mod.build(req, Storage({'ais': cached}))
        assert all(it.shard is None and os.readlink(f"/proc/self/fd/{it.src.fileno()}")
                   .startswith(cache_dir + "/") for it in p.items)
        out = BatchOutput(p, "tar", multipart=False)
        try:
            emit_to_file(out, tmp_path / "o")
        finally:
            out.close()
        assert (tmp_path / "o").read_bytes() == want
        assert len(passes) == n_passes
