"""Builders shared by the TAR-reading tests: shards made by tarfile, and hand-made headers."""
import gzip
import io
import random
import tarfile

import lz4.frame

from getbatch.archive import index


def text(n, seed=0):
    """`n` bytes of text-like (compressible) data."""
    rnd = random.Random(seed)
    words = [bytes(rnd.choice(b"abcdefghij klmnop") for _ in range(rnd.randint(2, 8)))
             for _ in range(200)]
    out = bytearray()
    while len(out) < n:
        out += rnd.choice(words) + b" "
    return bytes(out[:n])


def bulk(n, seed=0):
    """`n` bytes of compressible text, quickly: text() of a prime length, cycled (so that no
    power-of-two shift of it reads the same)."""
    base = text(min(n, 65521), seed)
    return (base * (n // 65521 + 1))[:n]


def make_tar(entries, fmt=tarfile.GNU_FORMAT):
    """TAR bytes of `entries`: (name, data) for files, or a ready TarInfo (data None)."""
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w", format=fmt, encoding="utf-8",
                      errors="surrogateescape") as t:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                t.addfile(entry)
                continue
            name, data = entry
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    return bio.getvalue()


def special(name, typ, linkname=""):
    ti = tarfile.TarInfo(name)
    ti.type = typ
    ti.linkname = linkname
    return ti


def compress(tar_bytes, fmt):
    return gzip.compress(tar_bytes, 6) if fmt == "tgz" else lz4.frame.compress(tar_bytes)


SUFFIX = {"tar": ".tar", "tgz": ".tgz", "tar.lz4": ".tar.lz4"}


def write_shard(directory, stem, tar_bytes, fmt="tar"):
    """Write the shard in `fmt` and forget any cached index (paths get reused by tests)."""
    index.clear_cache()
    path = directory / (stem + SUFFIX[fmt])
    path.write_bytes(tar_bytes if fmt == "tar" else compress(tar_bytes, fmt))
    return path


def header(name=b"f", size=b"%011o\0" % 0, typ=b"0", magic=b"ustar\x0000", prefix=b"",
           checksum="unsigned", fix=True):
    """One 512-byte header with raw fields; `size` is the exact 12-byte field."""
    h = bytearray(512)
    h[0:len(name)] = name
    h[100:108] = b"0000644\0"
    h[108:116] = b"0000000\0"
    h[116:124] = b"0000000\0"
    h[124:136] = size
    h[136:148] = b"00000000000\0"
    h[156:157] = typ
    h[257:265] = magic
    h[345:345 + len(prefix)] = prefix
    if fix:
        h[148:156] = b" " * 8
        if checksum == "signed":
            total = sum(b - 256 if b > 127 else b for b in h)
        else:
            total = sum(h)
        h[148:156] = b"%06o\0 " % (total & 0o777777)
    return bytes(h)


def pad(data):
    return data + bytes(-len(data) % 512)


def pax_record(key, value):
    body = b" " + key + b"=" + value + b"\n"
    n = len(body) + 1
    while len(str(n).encode()) + len(body) != n:
        n += 1
    return str(n).encode() + body
