"""Builders shared by the TAR-reading tests: shards made by tarfile, and hand-made headers."""
import functools
import gzip
import io
import random
import struct
import tarfile
import zlib

import lz4.frame

try:
    from isal.isal_zlib import crc32 as _crc32
except ImportError:
    _crc32 = zlib.crc32

from getbatch.archive import memory


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
    memory.DEFAULT.clear()
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


_PIECE = 64 << 20   # bombs are made of one compressed piece of this many zeros, repeated


def bomb(fmt, size, name="bomb", crc=True, after=()):
    """A shard ('tgz', 'tar.lz4' or 'zip', deflated) whose member `name` holds `size` zero bytes
    (a multiple of 64 MiB): a decompression bomb, built in a blink from one compressed piece
    repeated (concatenated gzip members / lz4 frames; full-flushed deflate blocks). `crc`:
    compute the ZIP member's real CRC-32 (costly for big sizes; else a wrong one). `after`:
    (name, data) members that follow it (TAR formats)."""
    k, rest = divmod(size, _PIECE)
    assert not rest
    piece = _zeros_piece(fmt)
    if fmt in ("tgz", "tar.lz4"):
        ti = tarfile.TarInfo(name)
        ti.size = size
        head, tail = ti.tobuf(format=tarfile.GNU_FORMAT), make_tar(list(after))
        pack = (lambda b: gzip.compress(b, 1)) if fmt == "tgz" else lz4.frame.compress
        return pack(head) + piece * k + pack(tail)
    data = piece * k + b"\x03\x00"                          # an empty final block
    value = 0
    if crc:
        zeros = bytes(_PIECE)
        for _ in range(k):
            value = _crc32(zeros, value)
    return zip64_one(name, data, size, value)


@functools.lru_cache(maxsize=None)
def _zeros_piece(fmt):
    """_PIECE zero bytes compressed as one gzip member, one lz4 frame, or (zip) full-flushed
    deflate blocks that do not refer across pieces."""
    zeros = bytes(_PIECE)
    if fmt == "tgz":
        return gzip.compress(zeros, 9)
    if fmt == "tar.lz4":
        return lz4.frame.compress(zeros)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)


def zip64_one(name, data, size, crc, method=8):
    """A ZIP holding one member with these raw (compressed) bytes, with ZIP64 sizes."""
    enc = name.encode()
    u32 = 0xFFFFFFFF
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, method, 0, 0x21, crc, u32, u32,
                        len(enc), 20) + enc + struct.pack("<HHQQ", 1, 16, size, len(data))
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, method, 0, 0x21, crc, u32,
                          u32, len(enc), 20, 0, 0, 0, 0, 0) + enc + struct.pack(
                              "<HHQQ", 1, 16, size, len(data))
    cd_offset = len(local) + len(data)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), cd_offset, 0)
    return local + data + central + end
