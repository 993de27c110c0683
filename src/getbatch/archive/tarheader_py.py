"""Pure-Python twin of ext/_ctarheader.pyx: TAR headers for the output archive.

Each regular file gets one ustar block when its name fits (<= 100 bytes, or split
at a '/' into a <= 155-byte prefix and a <= 100-byte name) and is ASCII; otherwise a
PAX extended header ('x' block carrying `path=`) precedes the ustar block. Sizes of
8 GiB and more go into a PAX `size=` record and a base-256 size field. Output is
deterministic: only the arguments reach the header (uname/gname empty).
"""
from .tarblock import BLOCK, tar_pad

_OCTAL11 = 8 ** 11          # first value that no longer fits 11 octal digits
_PAX_NAME = b"././@PaxHeader"
_HEAD = b"ustar\x0000"       # magic + version, at offset 257


def _numeric(value: int, width: int) -> bytes:
    """A numeric field: octal digits + NUL, or GNU base-256 when too big for octal."""
    if value < 0:
        raise ValueError(f"negative header field: {value}")
    if value < 8 ** (width - 1):
        return b"%0*o\x00" % (width - 1, value)
    if value >= 256 ** (width - 1):
        raise ValueError(f"header field too large: {value}")
    return b"\x80" + value.to_bytes(width - 1, "big")


def _block(name: bytes, prefix: bytes, size: int, mtime: int, mode: int, uid: int, gid: int,
           typeflag: int) -> bytes:
    block = bytearray(BLOCK)
    block[0:len(name)] = name
    block[100:108] = _numeric(mode, 8)
    block[108:116] = _numeric(uid, 8)
    block[116:124] = _numeric(gid, 8)
    block[124:136] = _numeric(size, 12)
    block[136:148] = _numeric(mtime, 12)
    block[148:156] = b"        "
    block[156] = typeflag
    block[257:265] = _HEAD
    block[329:345] = b"0000000\x000000000\x00"
    block[345:345 + len(prefix)] = prefix
    block[148:156] = b"%06o\x00 " % sum(block)
    return bytes(block)


def _split(encoded: bytes) -> tuple[bytes, bytes] | None:
    """(prefix, name) for a name of 101..255 bytes, or None when no '/' splits it.

    The split takes the first '/' that leaves <= 100 bytes after it (the shortest
    prefix), with neither part empty.
    """
    n = len(encoded)
    lo = max(1, n - 101)
    hi = min(155, n - 2)
    if lo > hi:
        return None
    cut = encoded.find(b"/", lo, hi + 1)
    if cut < 0:
        return None
    return encoded[:cut], encoded[cut + 1:]


def pax_record(key: bytes, value: bytes) -> bytes:
    """One PAX record `<length> key=value\\n` (bytes): the length counts its own digits."""
    payload = b" %s=%s\n" % (key, value)
    length = len(payload) + 1
    while len(str(length)) + len(payload) != length:
        length = len(str(length)) + len(payload)
    return b"%d%s" % (length, payload)


def _check_name(name: str) -> None:
    if "\x00" in name:
        raise ValueError("NUL in TAR member name")


def tar_header(name: str, size: int, mtime: int = 0, mode: int = 0o644, uid: int = 0,
               gid: int = 0) -> bytes:
    """Header bytes (512, or more with a PAX header) for a regular file `name` of `size` bytes."""
    _check_name(name)
    encoded = name.encode("utf-8", "surrogateescape")
    big = size >= _OCTAL11
    if name.isascii() and not big:
        if len(encoded) <= 100:
            return _block(encoded, b"", size, mtime, mode, uid, gid, 0x30)
        if len(encoded) <= 255:
            parts = _split(encoded)
            if parts is not None:
                return _block(parts[1], parts[0], size, mtime, mode, uid, gid, 0x30)
    return _pax_header(name, encoded, size, mtime, mode, uid, gid)


def _pax_header(name: str, encoded: bytes, size: int, mtime: int, mode: int, uid: int,
                gid: int) -> bytes:
    ascii_name = name.encode("ascii", "replace")
    if name.isascii() and len(encoded) <= 100:
        records, ustar_name = b"", encoded
    else:
        records, ustar_name = pax_record(b"path", encoded), ascii_name[:100]
    if size >= _OCTAL11:
        records += pax_record(b"size", b"%d" % size)
    return (pax_extended(records, mtime, mode, uid, gid)
            + _block(ustar_name, b"", size, mtime, mode, uid, gid, 0x30))


def pax_extended(records: bytes, mtime: int = 0, mode: int = 0o644, uid: int = 0,
                 gid: int = 0) -> bytes:
    """A PAX extended header: its 'x' block, then `records` (pax_record's) padded to 512."""
    return (_block(_PAX_NAME, b"", len(records), mtime, mode, uid, gid, 0x78)
            + records + bytes(tar_pad(len(records))))


def tar_entry_size(name: str, size: int) -> int:
    """Bytes the entry takes in the output: header(s) + data padded to 512."""
    _check_name(name)
    if size < 0:
        raise ValueError(f"negative size: {size}")
    data = size + tar_pad(size)
    encoded = name.encode("utf-8", "surrogateescape")
    big = size >= _OCTAL11
    if name.isascii() and not big and (len(encoded) <= 100
                                       or (len(encoded) <= 255 and _split(encoded) is not None)):
        return BLOCK + data
    records = 0
    if not (name.isascii() and len(encoded) <= 100):
        records += len(pax_record(b"path", encoded))
    if big:
        records += len(pax_record(b"size", b"%d" % size))
    return 2 * BLOCK + records + tar_pad(records) + data

