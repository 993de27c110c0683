"""Benchmarks T10 (output TAR writing vs tarfile.addfile) and T8 (ZIP member reads vs zipfile).

Run: python -m pytest bench/bench_archive_write_zip.py -q -s
Each of ours/anchor pair runs in the same session; the module's last test prints the
ratios (medians of 5 rounds). Test data is generated once under bench/.data/ (gitignored).
"""
import io
import os
import random
import tarfile
import zipfile

import pytest

from getbatch.archive import backend, open_writer
from getbatch.archive.zipshard import ZipShard

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".data")
N_FILES = 10_000
N_SHARDS, N_MEMBERS, N_PICKS = 10, 1000, 20_000
ROUNDS = 5
MEDIANS = {}


class NullSink:
    def write(self, data):
        return len(data)


def run(benchmark, key, fn):
    benchmark.pedantic(fn, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    MEDIANS[key] = benchmark.stats.stats.median


# ---------------------------------------------------------------- T10: TAR writing

@pytest.fixture(scope="module", params=[4096, 65536], ids=["4KiB", "64KiB"])
def items(request):
    size = request.param
    rng = random.Random(1)
    # one os.urandom per item: freeing one huge blob would leave the allocator in an
    # unusual state (raised mmap threshold) that skews every later test in the process
    data = [os.urandom(size) for _ in range(N_FILES)]
    names = ["f%05d.bin" % i for i in range(N_FILES)]
    rng.shuffle(names)
    return size, names, data


@pytest.fixture(scope="module")
def files(items):
    size, names, data = items
    d = os.path.join(DATA, "f%dk" % (size // 1024))
    os.makedirs(d, exist_ok=True)
    paths = [os.path.join(d, n) for n in names]
    for p, b in zip(paths, data):
        if not os.path.exists(p) or os.path.getsize(p) != size:
            with open(p, "wb") as f:
                f.write(b)
    for p in paths:                       # warm the page cache
        with open(p, "rb") as f:
            f.read()
    return size, paths


def test_t10_ours_memory(benchmark, items):
    size, names, data = items

    def write():
        with open_writer("tar", NullSink()) as w:
            for n, b in zip(names, data):
                w.add(n, b)
    run(benchmark, ("T10", size, "memory", "ours"), write)


def test_t10_tarfile_memory(benchmark, items):
    size, names, data = items

    def write():
        with tarfile.open(fileobj=NullSink(), mode="w|", format=tarfile.GNU_FORMAT) as tf:
            for n, b in zip(names, data):
                ti = tarfile.TarInfo(n)
                ti.size = len(b)
                tf.addfile(ti, io.BytesIO(b))
    run(benchmark, ("T10", size, "memory", "tarfile"), write)


def test_t10_ours_files(benchmark, files):
    size, paths = files

    def write():
        with open_writer("tar", NullSink()) as w:
            for p in paths:
                fd = os.open(p, os.O_RDONLY)
                try:
                    w.add_file(os.path.basename(p), fd, 0, os.fstat(fd).st_size)
                finally:
                    os.close(fd)
    run(benchmark, ("T10", size, "files", "ours"), write)


def test_t10_tarfile_files(benchmark, files):
    size, paths = files

    def write():
        with tarfile.open(fileobj=NullSink(), mode="w|", format=tarfile.GNU_FORMAT) as tf:
            for p in paths:
                with open(p, "rb") as f:
                    ti = tarfile.TarInfo(os.path.basename(p))
                    ti.size = os.fstat(f.fileno()).st_size
                    tf.addfile(ti, f)
    run(benchmark, ("T10", size, "files", "tarfile"), write)


# ---------------------------------------------------------------- T8: ZIP member reads

def _text_pool(nbytes, rng):
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 10))) for _ in range(2000)]
    out, n = [], 0
    while n < nbytes:
        s = " ".join(rng.choices(vocab, k=100_000)) + "\n"
        out.append(s)
        n += len(s)
    return "".join(out).encode()[:nbytes]


@pytest.fixture(scope="module", params=["stored", "deflated"])
def zips(request):
    method = zipfile.ZIP_STORED if request.param == "stored" else zipfile.ZIP_DEFLATED
    d = os.path.join(DATA, "zip-" + request.param)
    os.makedirs(d, exist_ok=True)
    paths = [os.path.join(d, "shard_%03d.zip" % s) for s in range(N_SHARDS)]
    if not all(os.path.exists(p) for p in paths):
        rng = random.Random(3)
        pool = _text_pool(8 << 20, rng)
        for s, p in enumerate(paths):
            with zipfile.ZipFile(p + ".tmp", "w", method,
                                 compresslevel=6 if method == zipfile.ZIP_DEFLATED else None) as zf:
                for i in range(N_MEMBERS):
                    size = rng.randint(8192, 12288)
                    off = rng.randrange(0, len(pool) - size)
                    zf.writestr(zipfile.ZipInfo("sample_%03d_%04d.txt" % (s, i), (2023, 11, 14, 0, 0, 0)),
                                pool[off:off + size], compress_type=method)
            os.replace(p + ".tmp", p)
    rng = random.Random(7)
    picks = [(s, "sample_%03d_%04d.txt" % (s, rng.randrange(N_MEMBERS)))
             for s in (rng.randrange(N_SHARDS) for _ in range(N_PICKS))]
    for p in paths:
        with open(p, "rb") as f:
            f.read()
    return request.param, paths, picks


def test_t8_ours(benchmark, zips):
    kind, paths, picks = zips
    shards = [ZipShard(p) for p in paths]

    def read():
        return sum(len(shards[s].read(n)) for s, n in picks)
    run(benchmark, ("T8", kind, "ours"), read)
    for sh in shards:
        sh.close()


def test_t8_zipfile(benchmark, zips):
    kind, paths, picks = zips
    zfs = [zipfile.ZipFile(p) for p in paths]

    def read():
        return sum(len(zfs[s].read(n)) for s, n in picks)
    run(benchmark, ("T8", kind, "zipfile"), read)
    for zf in zfs:
        zf.close()


@pytest.fixture(scope="module", autouse=True)
def report():
    """Prints the side-by-side medians and ratios of this run once the module is done (a
    fixture, not a test, so that --benchmark-only does not skip it)."""
    yield
    lines = ["", "backend: %s" % backend()]
    for size in (4096, 65536):
        for src in ("memory", "files"):
            ours = MEDIANS.get(("T10", size, src, "ours"))
            ref = MEDIANS.get(("T10", size, src, "tarfile"))
            if ours and ref:
                lines.append("T10 %2d KiB from %-6s ours %8.0f files/s  tarfile.addfile %8.0f files/s  "
                             "ratio %.2fx" % (size // 1024, src, N_FILES / ours, N_FILES / ref, ref / ours))
    for kind in ("stored", "deflated"):
        ours, ref = MEDIANS.get(("T8", kind, "ours")), MEDIANS.get(("T8", kind, "zipfile"))
        if ours and ref:
            lines.append("T8 zip %-8s ours %8.0f members/s  zipfile.read %8.0f members/s  ratio %.2fx"
                         % (kind, N_PICKS / ours, N_PICKS / ref, ref / ours))
    print("\n".join(lines))
