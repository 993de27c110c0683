"""atheris harness: the persisted-index loader (fuzzcheck.check_index).

Inputs replace the persisted index of a fixed small shard, in one of three ways chosen by
the input: raw bytes, or the true index with bytes flipped (damaged: must never be used), or
the true index's fields with some replaced and a valid digest recomputed (forged: may be used
only if it passes the sanity checks, and then reads stay inside the shard).

    python fuzz/fuzz_index.py -max_total_time=300 -max_len=4096
"""
import array
import os
import tarfile

import atheris
import msgpack

from harness import fuzzcheck, run, workdir
from getbatch.archive import index
from tarhelp import make_tar

DIR = workdir("index")
SHARD = os.path.join(DIR, "shard.tar")
IDX = os.path.join(DIR, "idx")
with open(SHARD, "wb") as f:
    f.write(make_tar([("a", b"alpha"), ("b/" + "n" * 120, b"beta" * 200), ("a", b"dup")],
                     tarfile.GNU_FORMAT))
index.clear_cache()
_, MEMBERS, _, CONTENTS, _, _ = fuzzcheck.read_all(SHARD, "", index_dir=IDX)
(TRUE_BLOB,) = [open(os.path.join(IDX, n), "rb").read() for n in os.listdir(IDX)]
FIELDS = msgpack.unpackb(TRUE_BLOB[len(index._MAGIC) + index._DIGEST:], use_list=False)


def forged_value(fdp, old):
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


def test_one_input(data):
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 2)
    if mode == 2:
        fields = list(FIELDS)
        for _ in range(fdp.ConsumeIntInRange(1, 3)):
            i = fdp.ConsumeIntInRange(0, len(fields) - 1)
            fields[i] = forged_value(fdp, fields[i])
        body = msgpack.packb(fields, unicode_errors="surrogatepass")  # lone surrogates too
        fuzzcheck.check_index(index.seal(body), SHARD, IDX,
                              (MEMBERS, CONTENTS), sealed=True)
        return
    if mode == 1:
        blob = bytearray(TRUE_BLOB)
        for _ in range(fdp.ConsumeIntInRange(1, 4)):
            blob[fdp.ConsumeIntInRange(0, len(blob) - 1)] ^= fdp.ConsumeIntInRange(1, 255)
        if fdp.ConsumeBool():
            del blob[fdp.ConsumeIntInRange(0, len(blob)):]
    else:
        blob = fdp.ConsumeBytes(fdp.remaining_bytes())
    if bytes(blob) != TRUE_BLOB:
        fuzzcheck.check_index(bytes(blob), SHARD, IDX, (MEMBERS, CONTENTS), sealed=False)


if __name__ == "__main__":
    run(test_one_input)
