# cython: language_level=3
"""Cython twin of `tarscan_py`: the TAR header walk in C, same API, same results and errors.

Bounds checks are off for the module, so every access is checked by hand against the source
length before the pointer is formed; a corrupt or truncated shard raises CorruptArchive. The
limits (EXT_MAX, NAME_MAX, SIZE_MAX) are the twin's, imported from it.
"""
import os

from libc.stdint cimport int64_t
from libc.string cimport memchr, memcmp
from libc.errno cimport errno, EINTR
from posix.unistd cimport pread
from cpython.unicode cimport PyUnicode_DecodeUTF8

from .errors import CorruptArchive
from .member import DIR, FILE, HARDLINK, NAME_MAX, OTHER, SYMLINK, Member
from . import tarscan_py

cdef enum:
    BLOCK = 512
cdef int64_t EXT_MAX = tarscan_py.EXT_MAX
cdef Py_ssize_t NAME_LIMIT = NAME_MAX
cdef int64_t MAX_SIZE = tarscan_py.SIZE_MAX

cdef bytes _ZERO = bytes(BLOCK)
cdef object _tuple_new = tuple.__new__


cdef struct Src:
    const unsigned char* buf   # buffer mode: the whole source
    int fd                     # fd mode when >= 0
    int64_t n                  # source length
    unsigned char hdr[BLOCK]   # fd mode: the current header block


cdef int _read_at(Src* s, unsigned char* dst, Py_ssize_t length, int64_t pos) except -1:
    cdef Py_ssize_t got = 0
    cdef Py_ssize_t r
    while got < length:
        with nogil:
            r = pread(s.fd, dst + got, length - got, pos + got)
        if r < 0 and errno == EINTR:
            continue
        if r <= 0:
            raise ValueError(f"short read at offset {pos} (file changed while scanned?)")
        got += r
    return 0


cdef const unsigned char* _header(Src* s, int64_t pos) except NULL:
    if s.fd < 0:
        return s.buf + pos
    _read_at(s, s.hdr, BLOCK, pos)
    return s.hdr


cdef bytes _bytes(Src* s, int64_t pos, Py_ssize_t length):
    """Copy of `length` source bytes at `pos` (caller checked pos + length <= n)."""
    cdef bytes chunk
    if s.fd < 0:
        return (<const char*>s.buf)[pos:pos + length]
    chunk = os.pread(s.fd, length, pos)  # extended headers only: rare, no need for C here
    if len(chunk) != length:
        raise ValueError(f"short read at offset {pos} (file changed while scanned?)")
    return chunk


cdef Py_ssize_t _cstrlen(const unsigned char* p, Py_ssize_t width) noexcept:
    cdef const void* z = memchr(p, 0, width)
    return width if z == NULL else <Py_ssize_t>(<const unsigned char*>z - p)


cdef int64_t _number(const unsigned char* f, Py_ssize_t width, str what) except -1:
    """Numeric field: octal text padded with NULs/spaces, or GNU base-256 (0x80 lead byte)."""
    cdef int64_t v = 0
    cdef Py_ssize_t i, j, end
    cdef unsigned char c
    if f[0] == 0x80:
        for i in range(1, width):
            if v > (MAX_SIZE >> 8):
                raise ValueError(f"{what} too large")
            v = (v << 8) | f[i]
        if v > MAX_SIZE:
            raise ValueError(f"{what} too large")
        return v
    if f[0] == 0xFF:
        raise ValueError(f"negative {what}")
    end = _cstrlen(f, width)
    i = 0
    while i < end and f[i] == 0x20:
        i += 1
    j = end
    while j > i and f[j - 1] == 0x20:
        j -= 1
    for k in range(i, j):
        c = f[k]
        if c < 0x30 or c > 0x37:
            raise ValueError(f"bad {what} field {(<const char*>f)[:width]!r}")
    for k in range(i, j):
        if v > (MAX_SIZE >> 3):
            raise ValueError(f"{what} too large")
        v = v * 8 + (f[k] - 0x30)
    if v > MAX_SIZE:
        raise ValueError(f"{what} too large")
    return v


cdef int _check_header(const unsigned char* h) except -1:
    cdef int64_t stored = _number(h + 148, 8, "checksum")
    cdef long unsigned_sum = 8 * 0x20
    cdef long signed_sum = 8 * 0x20
    cdef Py_ssize_t i
    # two branch-free loops around the checksum field, so gcc can vectorise them
    for i in range(148):
        unsigned_sum += h[i]
        signed_sum += <signed char>h[i]
    for i in range(156, BLOCK):
        unsigned_sum += h[i]
        signed_sum += <signed char>h[i]
    if stored != unsigned_sum and stored != signed_sum:
        raise ValueError("header checksum mismatch")
    return 0


cdef bint _isdigits(bytes b):
    cdef Py_ssize_t i
    cdef const unsigned char* p = b
    if len(b) == 0:
        return False
    for i in range(len(b)):
        if p[i] < 0x30 or p[i] > 0x39:
            return False
    return True


cdef int _parse_pax(bytes payload, dict out) except -1:
    """Merge the records of one PAX extended header into `out` (key bytes -> value bytes)."""
    cdef const unsigned char* p = payload
    cdef Py_ssize_t end = len(payload)
    cdef Py_ssize_t pos = 0, space, limit, rec_end, eq, ndigits, k
    cdef int64_t length
    while pos < end:
        if p[pos] == 0:
            break
        limit = end if end < pos + 24 else pos + 24
        space = -1
        for k in range(pos, limit):
            if p[k] == 0x20:
                space = k
                break
        if space <= pos:
            raise ValueError("bad PAX record length")
        ndigits = space - pos
        length = 0
        for k in range(pos, space):
            if p[k] < 0x30 or p[k] > 0x39:
                raise ValueError("bad PAX record length")
            if length <= end:  # anything beyond the payload is rejected below, no overflow
                length = length * 10 + (p[k] - 0x30)
        if length <= ndigits + 1 or length > end - pos or p[pos + length - 1] != 0x0A:
            raise ValueError("bad PAX record")
        rec_end = pos + length
        eq = -1
        for k in range(space + 1, rec_end - 1):
            if p[k] == 0x3D:
                eq = k
                break
        if eq < 0:
            raise ValueError("bad PAX record (no '=')")
        # only the records that change what is indexed are kept (tarscan_py.PAX_KEPT)
        if eq - space - 1 == 4 and (memcmp(p + space + 1, b"path", 4) == 0
                                    or memcmp(p + space + 1, b"size", 4) == 0):
            out[payload[space + 1:eq]] = payload[eq + 1:rec_end - 1]
        pos = rec_end
    return 0


cdef tuple _walk(Src* s, int64_t base, bint partial, list members):
    """Parse headers from position 0; returns (next header position, saw end-of-archive)."""
    cdef int64_t n = s.n
    cdef int64_t pos = 0, group, size, data, ext_total
    cdef const unsigned char* h
    cdef unsigned char typ
    cdef bint have_ext
    cdef bytes long_name, raw, tail
    cdef dict pax
    cdef Py_ssize_t ln, lp
    cdef object kind
    cdef str name
    while True:
        group = pos
        long_name = None
        pax = None
        have_ext = False
        ext_total = 0
        while True:
            if pos + BLOCK > n:
                if partial:
                    return group, False
                if have_ext:
                    raise ValueError(f"truncated: extended header at {base + group} "
                                     "is not followed by a member")
                if pos < n:
                    tail = _bytes(s, pos, n - pos)
                    if tail.strip(b"\0"):
                        raise ValueError(f"truncated header at offset {base + pos}")
                return pos, True
            h = _header(s, pos)
            if h[0] == 0 and (<const char*>h)[:BLOCK] == _ZERO:
                if have_ext:
                    raise ValueError(f"extended header at {base + group} "
                                     "is not followed by a member")
                return pos, True
            _check_header(h)
            size = _number(h + 124, 12, "size")
            typ = h[156]
            data = pos + BLOCK
            if typ == b'L' or typ == b'K' or typ == b'x' or typ == b'X' or typ == b'g':
                ext_total += size
                if ext_total > EXT_MAX:
                    raise ValueError(f"extended header at {base + pos} too large ({size} "
                                     f"bytes, {ext_total} for one member; limit {EXT_MAX})")
                if data + size > n:
                    if partial:
                        return group, False
                    raise ValueError(f"truncated extended header at offset {base + pos}")
                if typ == b'L':
                    long_name = _bytes(s, data, size)
                    long_name = long_name.split(b"\0", 1)[0]
                    have_ext = True
                elif typ == b'x' or typ == b'X':
                    if pax is None:
                        pax = {}
                    _parse_pax(_bytes(s, data, size), pax)
                    have_ext = True
                pos = data + (size + BLOCK - 1) // BLOCK * BLOCK
                continue
            break

        # h still points at this member's header: no source read happened since
        if pax is not None and b"path" in pax:
            raw = pax[b"path"]
        elif long_name is not None:
            raw = long_name
        else:
            ln = _cstrlen(h, 100)
            raw = None
            if h[257] == b'u' and (<const char*>h)[257:263] == b"ustar\0":
                lp = _cstrlen(h + 345, 155)
                if lp:
                    raw = (<const char*>h + 345)[:lp] + b"/" + (<const char*>h)[:ln]
            if raw is None:
                raw = (<const char*>h)[:ln]
        if len(raw) > NAME_LIMIT:
            raise ValueError(f"member name at offset {base + group} is {len(raw)} bytes "
                             f"long (limit {NAME_LIMIT})")
        if pax is not None and b"size" in pax:
            tail = pax[b"size"]
            if not _isdigits(tail) or int(tail) > MAX_SIZE:
                raise ValueError(f"bad PAX size at offset {base + group}")
            size = int(tail)
        if typ == b'0' or typ == 0 or typ == b'7':
            kind = FILE
        elif typ == b'5':
            kind = DIR
        elif typ == b'2':
            kind = SYMLINK
        elif typ == b'1':
            kind = HARDLINK
        else:
            kind = OTHER
        if typ == 0 and raw.endswith(b"/"):
            kind = DIR
        if b'1' <= typ <= b'6':
            size = 0
        name = PyUnicode_DecodeUTF8(raw, len(raw), "surrogateescape")
        if kind is DIR:
            name = name.rstrip("/") or name
        if not partial and data + size > n:
            raise ValueError(f"truncated: {name!r} needs {size} bytes at offset "
                             f"{base + data}, archive ends at {base + n}")
        # tuple.__new__ skips the namedtuple's Python-level __new__ (a third of the scan time)
        members.append(_tuple_new(Member, (name, base + data, size, kind, 0, -1, -1)))
        pos = data + (size + BLOCK - 1) // BLOCK * BLOCK


def scan(buf, base_offset=0, *, bint partial=False, shard="<buffer>"):
    """Members of the TAR data in `buf`; offsets are `base_offset` + position in `buf`.

    With `partial=True` the buffer is a window of a longer stream: returns
    (members, next_pos, done) where next_pos is where the next header group starts relative
    to `buf` (it may lie beyond the buffer when the last member's data does) and done tells
    that the end-of-archive block was seen. Raises CorruptArchive naming `shard`.
    """
    cdef const unsigned char[::1] view = memoryview(buf).cast("B")
    cdef Src s
    cdef list members = []
    s.fd = -1
    s.n = view.shape[0]
    s.buf = &view[0] if s.n > 0 else NULL
    try:
        pos, done = _walk(&s, base_offset, partial, members)
    except ValueError as exc:
        raise CorruptArchive(shard, str(exc)) from None
    return (members, pos, done) if partial else members


def scan_fd(int fd, size, *, shard="<fd>"):
    """Members of the plain TAR file open on `fd`, `size` bytes long, read header by header."""
    cdef Src s
    cdef list members = []
    s.fd = fd
    s.n = size
    s.buf = NULL
    try:
        _walk(&s, 0, False, members)
    except ValueError as exc:
        raise CorruptArchive(shard, str(exc)) from None
    return members
