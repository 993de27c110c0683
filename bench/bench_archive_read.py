"""Benchmarks T4-T7 (reading members out of .tar / .tgz / .tar.lz4 shards) against their anchors.

Run: python -m pytest bench/bench_archive_read.py -q -s
Shapes follow reference/perf-anchors.md, scaled down: 10 shards x 1000 text-like members of
8-12 KiB (generated once under bench/.data/tar-shards/, gitignored), with .tgz (gzip -6) and
.tar.lz4 copies. Ours and the anchors run in the same session; the last test prints the
medians (5 rounds each) and the ratios.
"""
import gzip
import io
import os
import random
import tarfile
import time

import lz4.frame
import pytest

import zlib

from getbatch.archive import backend, memory, open_shard, tarshard
from getbatch.archive.tarshard import CompressedTarShard, TarShard

try:
    import libarchive
except ImportError:  # optional anchor
    libarchive = None

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".data", "tar-shards")
N_SHARDS, N_MEMBERS, N_PICKS = 10, 1000, 20_000
ROUNDS = 5
RESULTS = {}  # key -> (median seconds, items per run)


def run(benchmark, key, fn, items, setup=None):
    if setup is None:
        benchmark.pedantic(fn, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    else:
        benchmark.pedantic(fn, setup=setup, rounds=ROUNDS, warmup_rounds=1)
    RESULTS[key] = (benchmark.stats.stats.median, items)


def _corpus(rnd, size):
    """Words drawn with Zipf-like frequencies: gzip -6 ratio ~2.8, lz4 ~1.8 (anchors: 2.9, 1.65)."""
    words = ["".join(rnd.choice("etaoinshrdlucmfwypvbgkqjxz") for _ in range(rnd.randint(2, 10)))
             for _ in range(8000)]
    weights = [1 / (rank + 1) for rank in range(len(words))]
    return " ".join(rnd.choices(words, weights=weights, k=size // 5)).encode()


def _build():
    os.makedirs(DATA, exist_ok=True)
    rnd = random.Random(1)
    corpus = _corpus(rnd, 4 << 20)
    paths = []
    for s in range(N_SHARDS):
        base = os.path.join(DATA, f"shard-{s:03d}")
        paths.append(base)
        if all(os.path.exists(base + ext) for ext in (".tar", ".tgz", ".tar.lz4")):
            continue
        bio = io.BytesIO()
        with tarfile.open(fileobj=bio, mode="w", format=tarfile.GNU_FORMAT) as t:
            for i in range(N_MEMBERS):
                size = rnd.randint(8192, 12288)
                start = rnd.randrange(len(corpus) - size)
                ti = tarfile.TarInfo(f"sample_{s:03d}_{i:04d}.txt")
                ti.size = size
                t.addfile(ti, io.BytesIO(corpus[start:start + size]))
        raw = bio.getvalue()
        for ext, blob in ((".tar", raw), (".tgz", gzip.compress(raw, 6)),
                          (".tar.lz4", lz4.frame.compress(raw))):
            with open(base + ext + ".tmp", "wb") as f:
                f.write(blob)
            os.replace(base + ext + ".tmp", base + ext)
    for base in paths:  # warm the page cache
        for ext in (".tar", ".tgz", ".tar.lz4"):
            with open(base + ext, "rb") as f:
                while f.read(1 << 20):
                    pass
    return paths


@pytest.fixture(scope="module")
def shards():
    return _build()


@pytest.fixture(scope="module")
def picks():
    rnd = random.Random(7)
    return [(s, f"sample_{s:03d}_{i:04d}.txt") for s, i in
            ((rnd.randrange(N_SHARDS), rnd.randrange(N_MEMBERS)) for _ in range(N_PICKS))]


# ---------------------------------------------------------------- T4: indexed .tar reads

def test_t4_ours(benchmark, shards, picks):
    opened = [TarShard(p + ".tar") for p in shards]

    def reads():
        for s, name in picks:
            opened[s].read(name)
    run(benchmark, ("T4", "ours: TarShard.read, index warm"), reads, N_PICKS)


def test_t4_ours_open_per_read(benchmark, shards, picks):
    paths = [p + ".tar" for p in shards]

    def reads():
        for s, name in picks:
            with open_shard(paths[s]) as sh:
                sh.read(name)
    run(benchmark, ("T4", "ours: open_shard (LRU) + read per member"), reads, N_PICKS)


def test_t4_tarfile_getmember(benchmark, shards, picks):
    opened = [tarfile.open(p + ".tar") for p in shards]
    for t in opened:
        t.getmembers()

    def reads():
        for s, name in picks:
            t = opened[s]
            t.extractfile(t.getmember(name)).read()
    run(benchmark, ("T4", "tarfile kept open + getmember"), reads, N_PICKS)


def test_t4_tarfile_dict(benchmark, shards, picks):
    opened = [tarfile.open(p + ".tar") for p in shards]
    maps = [{m.name: m for m in t.getmembers()} for t in opened]

    def reads():
        for s, name in picks:
            opened[s].extractfile(maps[s][name]).read()
    run(benchmark, ("T4", "tarfile kept open + own dict"), reads, N_PICKS)


def test_t4_pread_floor(benchmark, shards, picks):
    fds = [os.open(p + ".tar", os.O_RDONLY) for p in shards]
    maps = [{m.name: (m.offset_data, m.size) for m in tarfile.open(p + ".tar").getmembers()}
            for p in shards]

    def reads():
        for s, name in picks:
            off, size = maps[s][name]
            os.pread(fds[s], size, off)
    run(benchmark, ("T4", "floor: dict + os.pread"), reads, N_PICKS)


# ---------------------------------------------------------------- T5: cold header scan

def test_t5_ours(benchmark, shards):
    def scan():
        for p in shards:
            TarShard(p + ".tar").close()
    run(benchmark, ("T5", "ours: cold TarShard (header scan)"), scan, N_SHARDS,
        setup=lambda: (memory.DEFAULT.clear(), ((), {}))[1])


def test_t5_ours_index_load(benchmark, shards, tmp_path_factory):
    idx_dir = tmp_path_factory.mktemp("idx")
    for p in shards:
        TarShard(p + ".tar", index_dir=idx_dir).close()

    def load():
        for p in shards:
            TarShard(p + ".tar", index_dir=idx_dir).close()
    run(benchmark, ("T5", "ours: persisted index load"), load, N_SHARDS,
        setup=lambda: (memory.DEFAULT.clear(), ((), {}))[1])


def test_t5_tarfile_getmembers(benchmark, shards):
    def scan():
        for p in shards:
            with tarfile.open(p + ".tar") as t:
                t.getmembers()
    run(benchmark, ("T5", "tarfile.open + getmembers"), scan, N_SHARDS)


# ---------------------------------------------------------------- T6/T7: whole compressed shards

def _names(s):
    names = [f"sample_{s:03d}_{i:04d}.txt" for i in range(N_MEMBERS)]
    random.Random(s).shuffle(names)  # request order != file order
    return names


@pytest.mark.parametrize("ext,target", [(".tgz", "T6"), (".tar.lz4", "T7")])
@pytest.mark.parametrize("cold", [False, True], ids=["warm", "cold"])
def test_t67_ours(benchmark, shards, ext, target, cold):
    names = [_names(s) for s in range(N_SHARDS)]
    if not cold:
        for p in shards:
            CompressedTarShard(p + ext).members()

    def read_all():
        for s, p in enumerate(shards):
            with CompressedTarShard(p + ext) as sh:
                sh.read_many(names[s])
    label = "index built in the same pass" if cold else "index warm"
    if ext == ".tgz":
        label += f", {tarshard._inflate.__name__.split('.')[-1]}"
    run(benchmark, (target, f"ours: read_many(all, shuffled), {label}"), read_all,
        N_SHARDS * N_MEMBERS, setup=(lambda: (memory.DEFAULT.clear(), ((), {}))[1]) if cold else None)


@pytest.mark.skipif(tarshard._inflate is zlib, reason="isal not installed: zlib is the default")
def test_t6_ours_zlib_only(benchmark, shards, monkeypatch):
    monkeypatch.setattr(tarshard, "_inflate", zlib)
    names = [_names(s) for s in range(N_SHARDS)]
    for p in shards:
        CompressedTarShard(p + ".tgz").members()

    def read_all():
        for s, p in enumerate(shards):
            with CompressedTarShard(p + ".tgz") as sh:
                sh.read_many(names[s])
    run(benchmark, ("T6", "ours: read_many(all, shuffled), index warm, zlib"), read_all,
        N_SHARDS * N_MEMBERS)


def _lz4_open(path):
    return tarfile.open(fileobj=lz4.frame.open(path), mode="r|")


@pytest.mark.parametrize("ext,target", [(".tgz", "T6"), (".tar.lz4", "T7")])
def test_t67_tarfile_stream(benchmark, shards, ext, target):
    def read_all():
        for p in shards:
            t = tarfile.open(p + ext, "r|gz") if ext == ".tgz" else _lz4_open(p + ext)
            with t:
                for m in t:
                    if m.isreg():
                        t.extractfile(m).read()
    mode = "r|gz" if ext == ".tgz" else "r| over lz4.frame.open"
    run(benchmark, (target, f"tarfile {mode}, every member"), read_all, N_SHARDS * N_MEMBERS)


@pytest.mark.skipif(libarchive is None, reason="libarchive-c not installed")
@pytest.mark.parametrize("ext,target", [(".tgz", "T6"), (".tar.lz4", "T7")])
def test_t67_libarchive(benchmark, shards, ext, target):
    def read_all():
        for p in shards:
            with libarchive.file_reader(p + ext) as a:
                for entry in a:
                    b"".join(entry.get_blocks())
    run(benchmark, (target, "libarchive file_reader, every member"), read_all,
        N_SHARDS * N_MEMBERS)


# ---------------------------------------------------------------- report

@pytest.fixture(scope="module", autouse=True)
def report():
    """Prints the side-by-side figures once the module is done (a fixture, not a test, so
    that --benchmark-only does not skip it)."""
    yield
    if not RESULTS:
        return
    print(f"\n\nbackend: {backend()}   ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs)")
    for target in ("T4", "T5", "T6", "T7"):
        rows = [(k[1], v) for k, v in RESULTS.items() if k[0] == target]
        if not rows:
            continue
        ours_per = rows[0][1][0] / rows[0][1][1]
        print(f"\n{target}   (last column: time per item / that of the first row)")
        for label, (seconds, items) in rows:
            per = seconds / items
            unit = f"{per * 1e3:8.2f} ms/shard" if target == "T5" else f"{items / seconds:10,.0f} /s"
            print(f"  {label:62s} {unit}  {per / ours_per:6.2f}")
