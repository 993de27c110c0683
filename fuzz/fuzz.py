"""atheris (libFuzzer) harnesses of the shard readers, for long fuzzing runs.

    python fuzz/fuzz.py TARGET [WORK_CORPUS] fuzz/corpus/TARGET [libFuzzer flags]
    e.g. python fuzz/fuzz.py zip /tmp/zip-work fuzz/corpus/zip -max_total_time=600 -max_len=8192

Each target feeds libFuzzer's inputs to one property check of tests/archive/fuzzcheck.py, the
same checks the hypothesis tests in tests/archive/test_fuzz.py run on every test run, so a
crash here is a property violation or an undocumented exception there. Targets:
- tar: raw bytes as a plain .tar;
- compressed: first byte picks .tgz / .tar.lz4 and whether the rest is compressed here (to
  reach the TAR parser behind a valid stream) or is the compressed bytes themselves;
- zip: raw bytes as a .zip;
- index: the persisted index of a fixed small shard replaced by raw bytes, by the true index
  with bytes flipped (must never be used), or by the true fields partly replaced and sealed
  with a valid digest (a forgery: used only if it passes the sanity checks, and then reads
  stay inside the shard).
The Python code of getbatch (the pure twins included) is instrumented for coverage; the
Cython scanners run uninstrumented, cross-checked against their twins on every input.
"""
import array
import gzip
import logging
import os
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "archive"))
sys.path.insert(0, os.path.join(HERE, "..", "src"))

import atheris  # noqa: E402
import lz4.frame  # noqa: E402
import msgpack  # noqa: E402

with atheris.instrument_imports(include=["getbatch"]):
    from getbatch.archive import index, memory  # noqa: E402

import fuzzcheck  # noqa: E402
from tarhelp import make_tar  # noqa: E402


def files(name):
    return fuzzcheck.Files(tempfile.mkdtemp(prefix=f"getbatch-fuzz-{name}-"))


def tar_target():
    out = files("tar")
    return lambda data: fuzzcheck.check_tar(data, out)


def zip_target():
    out = files("zip")
    return lambda data: fuzzcheck.check_zip(data, out)


def compressed_target():
    out = files("compressed")

    def test_one_input(data):
        if not data:
            return
        mode, rest = data[0], data[1:]
        fmt = "tgz" if mode & 1 else "tar.lz4"
        if mode & 2:
            rest = gzip.compress(rest, 1) if fmt == "tgz" else lz4.frame.compress(rest)
        fuzzcheck.check_compressed(rest, fmt, out)
    return test_one_input


def index_target():
    logging.getLogger("getbatch.archive").setLevel(logging.ERROR)  # a rejected index is logged
    work = tempfile.mkdtemp(prefix="getbatch-fuzz-index-")
    shard, idx = os.path.join(work, "shard.tar"), os.path.join(work, "idx")
    with open(shard, "wb") as f:
        f.write(make_tar([("a", b"alpha"), ("b/" + "n" * 120, b"beta" * 200), ("a", b"dup")],
                         tarfile.GNU_FORMAT))
    memory.DEFAULT.clear()
    _, members, _, contents, _, _ = fuzzcheck.read_all(shard, "", index_dir=idx)
    (true_blob,) = [open(os.path.join(idx, n), "rb").read() for n in os.listdir(idx)]
    true_fields = msgpack.unpackb(true_blob[len(index._MAGIC) + index._DIGEST:], use_list=False)
    truth = (members, contents)

    def test_one_input(data):
        fdp = atheris.FuzzedDataProvider(data)
        mode = fdp.ConsumeIntInRange(0, 2)
        if mode == 2:
            fields = list(true_fields)
            for _ in range(fdp.ConsumeIntInRange(1, 3)):
                i = fdp.ConsumeIntInRange(0, len(fields) - 1)
                fields[i] = forged_value(fdp, fields[i])
            body = msgpack.packb(fields, unicode_errors="surrogatepass")  # lone surrogates too
            fuzzcheck.check_index(index.seal(body), shard, idx, truth, sealed=True)
            return
        if mode == 1:
            blob = bytearray(true_blob)
            for _ in range(fdp.ConsumeIntInRange(1, 4)):
                blob[fdp.ConsumeIntInRange(0, len(blob) - 1)] ^= fdp.ConsumeIntInRange(1, 255)
            if fdp.ConsumeBool():
                del blob[fdp.ConsumeIntInRange(0, len(blob)):]
        else:
            blob = fdp.ConsumeBytes(fdp.remaining_bytes())
        if bytes(blob) != true_blob:
            fuzzcheck.check_index(bytes(blob), shard, idx, truth, sealed=False)
    return test_one_input


def forged_value(fdp, old):
    """A replacement for one index field: a random value, or `old` with one entry changed."""
    kind = fdp.ConsumeIntInRange(0, 6)
    if kind == 0:
        return fdp.ConsumeIntInRange(-(1 << 63), (1 << 63) - 1)
    if kind == 1:
        return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64))
    if kind == 2:
        return fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 5000))
    if kind == 3 and isinstance(old, bytes) and old and not len(old) % 8:   # one extent
        col = array.array("q")
        col.frombytes(old)
        col[fdp.ConsumeIntInRange(0, len(col) - 1)] = fdp.ConsumeIntInRange(-(1 << 63),
                                                                            (1 << 63) - 1)
        return col.tobytes()
    if kind == 4 and isinstance(old, tuple) and old:                        # one name
        names = list(old)
        names[fdp.ConsumeIntInRange(0, len(names) - 1)] = fdp.ConsumeUnicode(
            fdp.ConsumeIntInRange(0, 5000))
        return names
    return [None, True, False, [], (1, 2)][fdp.ConsumeIntInRange(0, 4)]


TARGETS = {"tar": tar_target, "compressed": compressed_target, "zip": zip_target,
           "index": index_target}


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(TARGETS)}}} [corpus dirs] [libFuzzer flags]")
    test_one_input = TARGETS[sys.argv.pop(1)]()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
