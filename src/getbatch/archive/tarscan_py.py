"""Pure-Python twin of `_ctarscan`: walks TAR headers and lists the members.

Two entry points with one parser behind them:
- `scan(buf, base_offset=0, *, partial=False, shard=...)` over a bytes-like buffer holding TAR
  data (an in-memory archive, or a window of a decompressed stream when `partial`);
- `scan_fd(fd, size, *, shard=...)` over a plain .tar file, reading only the 512-byte headers
  (and extended-header payloads) with pread, so a cold scan touches ~1 block per member.

Understood: ustar/v7/GNU headers, GNU long names ('L') and long links ('K', skipped), PAX
extended headers ('x'/'X': only the path and size records are kept; 'g' skipped), base-256
sizes, octal fields padded with spaces/NULs, signed or unsigned header checksums. The archive
ends at the first zero block or at EOF; anything truncated or malformed raises CorruptArchive
naming the shard.

Bounds against hostile shards: the extended headers in front of one member total at most
EXT_MAX bytes, and a member name is at most member.NAME_MAX bytes; either excess is
CorruptArchive. So a reader holds at most EXT_MAX bytes of header per member, and an index
at most NAME_MAX bytes of name per member.
"""
import os
from collections.abc import Callable
from typing import Literal, overload

from .errors import CorruptArchive
from .member import DIR, FILE, HARDLINK, NAME_MAX, OTHER, SYMLINK, Member
from .tarblock import BLOCK, tar_pad

# Extended headers (PAX records, GNU long names/links) of one member above this in total are
# taken as corruption: a damaged size field or a hostile shard must not make a streaming
# reader buffer megabytes of header per member. Real ones are a few hundred bytes.
EXT_MAX = 1 << 20
# The PAX records that change what is indexed; others are parsed, checked and dropped.
PAX_KEPT = (b"path", b"size")
# Sizes above this cannot be real (and would overflow the C twin's 64-bit arithmetic).
SIZE_MAX = 1 << 62

_ZERO = bytes(BLOCK)
_KIND = {0x30: FILE, 0: FILE, 0x37: FILE, 0x35: DIR, 0x32: SYMLINK, 0x31: HARDLINK}
# Link, device, directory and fifo entries carry no data whatever their size field says
# (tarfile and GNU tar read them that way), so their data is not skipped.
_NO_DATA = frozenset(b"123456")
_TYPE_L, _TYPE_K, _TYPE_X, _TYPE_XS, _TYPE_G = b"LKxXg"


def _octal(field: bytes, what: str) -> int:
    """Value of a numeric header field: octal text (NUL/space padded) or GNU base-256."""
    first = field[0]
    if first == 0x80:
        value = int.from_bytes(field[1:], "big")
        if value > SIZE_MAX:
            raise ValueError(f"{what} too large")
        return value
    if first == 0xFF:
        raise ValueError(f"negative {what}")
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    if text.strip(b"01234567"):
        raise ValueError(f"bad {what} field {bytes(field)!r}")
    value = int(text, 8)
    if value > SIZE_MAX:
        raise ValueError(f"{what} too large")
    return value


def _check_header(hdr: bytes) -> None:
    """Raise ValueError unless the stored checksum matches the signed or unsigned byte sum."""
    stored = _octal(hdr[148:156], "checksum")
    unsigned = sum(hdr) - sum(hdr[148:156]) + 8 * 0x20
    if stored == unsigned:
        return
    signed = unsigned - 256 * sum(1 for b in hdr[:148] if b > 127) - 256 * sum(
        1 for b in hdr[156:] if b > 127)
    if stored != signed:
        raise ValueError("header checksum mismatch")


def _parse_pax(payload: bytes, out: dict[bytes, bytes]) -> None:
    """Merge the records of one PAX extended header into `out` (key bytes -> value bytes)."""
    pos, end = 0, len(payload)
    while pos < end:
        if payload[pos] == 0:  # some writers NUL-pad the last block
            break
        space = payload.find(b" ", pos, min(end, pos + 24))
        digits = payload[pos:space] if space > pos else b""
        if not digits or not digits.isdigit():
            raise ValueError("bad PAX record length")
        length = int(digits)
        rec_end = pos + length
        if length <= len(digits) + 1 or rec_end > end or payload[rec_end - 1] != 0x0A:
            raise ValueError("bad PAX record")
        key, eq, value = payload[space + 1:rec_end - 1].partition(b"=")
        if not eq:
            raise ValueError("bad PAX record (no '=')")
        if key in PAX_KEPT:
            out[key] = value
        pos = rec_end


def _cstr(field: bytes) -> bytes:
    return field.split(b"\0", 1)[0]


def _walk(fetch: Callable[[int, int], bytes], n: int, base_offset: int, partial: bool,
          members: list[Member]) -> tuple[int, bool]:
    """Parse headers from position 0 of a source of `n` bytes; `fetch(pos, length)` returns
    exactly those bytes. Returns (next header position, saw end-of-archive)."""
    pos = 0
    while True:
        group = pos
        long_name = None
        pax: dict[bytes, bytes] | None = None
        ext_total = 0
        while True:
            if pos + BLOCK > n:
                if partial:
                    return group, False
                if long_name is not None or pax is not None:
                    raise ValueError(f"truncated: extended header at {base_offset + group} "
                                     "is not followed by a member")
                if pos < n and fetch(pos, n - pos).strip(b"\0"):
                    raise ValueError(f"truncated header at offset {base_offset + pos}")
                return pos, True
            hdr = fetch(pos, BLOCK)
            if hdr == _ZERO:
                if long_name is not None or pax is not None:
                    raise ValueError(f"extended header at {base_offset + group} "
                                     "is not followed by a member")
                return pos, True
            _check_header(hdr)
            size = _octal(hdr[124:136], "size")
            typ = hdr[156]
            data = pos + BLOCK
            if typ in (_TYPE_L, _TYPE_K, _TYPE_X, _TYPE_XS, _TYPE_G):
                ext_total += size
                if ext_total > EXT_MAX:
                    raise ValueError(f"extended header at {base_offset + pos} too large ({size} "
                                     f"bytes, {ext_total} for one member; limit {EXT_MAX})")
                if data + size > n:
                    if partial:
                        return group, False
                    raise ValueError(f"truncated extended header at offset {base_offset + pos}")
                if typ == _TYPE_L:
                    long_name = _cstr(fetch(data, size))
                elif typ == _TYPE_X or typ == _TYPE_XS:
                    if pax is None:
                        pax = {}
                    _parse_pax(fetch(data, size), pax)
                pos = data + size + tar_pad(size)
                continue
            break

        if pax is not None and b"path" in pax:
            raw = pax[b"path"]
        elif long_name is not None:
            raw = long_name
        else:
            raw = _cstr(hdr[0:100])
            if hdr[257:263] == b"ustar\0":
                prefix = _cstr(hdr[345:500])
                if prefix:
                    raw = prefix + b"/" + raw
        if len(raw) > NAME_MAX:
            raise ValueError(f"member name at offset {base_offset + group} is {len(raw)} bytes "
                             f"long (limit {NAME_MAX})")
        if pax is not None and b"size" in pax:
            text = pax[b"size"]
            if not text.isdigit() or int(text) > SIZE_MAX:
                raise ValueError(f"bad PAX size at offset {base_offset + group}")
            size = int(text)
        kind = _KIND.get(typ, OTHER)
        if typ == 0 and raw.endswith(b"/"):
            kind = DIR
        if typ in _NO_DATA:
            size = 0
        name = raw.decode("utf-8", "surrogateescape")
        if kind == DIR:
            name = name.rstrip("/") or name
        if not partial and data + size > n:
            raise ValueError(f"truncated: {name!r} needs {size} bytes at offset "
                             f"{base_offset + data}, archive ends at {base_offset + n}")
        members.append(Member(name, base_offset + data, size, kind))
        pos = data + size + tar_pad(size)


@overload
def scan(buf: bytes | bytearray | memoryview, base_offset: int = 0, *,
         partial: Literal[False] = False, shard: object = "<buffer>") -> list[Member]: ...


@overload
def scan(buf: bytes | bytearray | memoryview, base_offset: int = 0, *, partial: Literal[True],
         shard: object = "<buffer>") -> tuple[list[Member], int, bool]: ...


def scan(buf: bytes | bytearray | memoryview, base_offset: int = 0, *, partial: bool = False,
         shard: object = "<buffer>") -> list[Member] | tuple[list[Member], int, bool]:
    """Members of the TAR data in `buf`; offsets are `base_offset` + position in `buf`.

    With `partial=True` the buffer is a window of a longer stream: returns
    (members, next_pos, done) where next_pos is where the next header group starts relative
    to `buf` (it may lie beyond the buffer when the last member's data does) and done tells
    that the end-of-archive block was seen. Raises CorruptArchive naming `shard`.
    """
    members: list[Member] = []
    with memoryview(buf) as mv, mv.cast("B") as view:
        try:
            pos, done = _walk(lambda p, k: bytes(view[p:p + k]), len(view), base_offset,
                              partial, members)
        except ValueError as exc:
            raise CorruptArchive(shard, str(exc)) from None
    return (members, pos, done) if partial else members


def scan_fd(fd: int, size: int, *, shard: object = "<fd>") -> list[Member]:
    """Members of the plain TAR file open on `fd`, `size` bytes long, read header by header."""
    return scan_pread(lambda length, pos: os.pread(fd, length, pos), size, shard=shard)


def scan_pread(pread: Callable[[int, int], bytes], size: int, *,
               shard: object = "<pread>") -> list[Member]:
    """Members of a plain TAR of `size` bytes read through `pread(length, offset) -> bytes`
    (a remote shard's ranged reads), header by header."""
    def fetch(pos: int, length: int) -> bytes:
        chunk = pread(length, pos)
        if len(chunk) != length:
            raise ValueError(f"short read at offset {pos} (file changed while scanned?)")
        return chunk

    members: list[Member] = []
    try:
        _walk(fetch, size, 0, False, members)
    except ValueError as exc:
        raise CorruptArchive(shard, str(exc)) from None
    return members
