# cython: language_level=3
"""TAR headers for the output archive (Cython; pure-Python twin: tarheader_py.py).

The common case - an ASCII name that fits ustar and a size below 8 GiB - is one
memcpy of a cached template block plus the name, two octal fields and the checksum.
Everything else (PAX path/size records, base-256 fields) takes the twin's rules,
written here in plain Python because it is rare.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.string cimport memcpy, memset, memchr

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object)
    const char* PyUnicode_AsUTF8AndSize(object, Py_ssize_t*) except NULL

cdef long long OCTAL11 = 8589934592      # 8 ** 11
cdef long long OCTAL7 = 2097152           # 8 ** 7

# The template holds every field that does not change per entry; its byte sum
# (checksum field counted as spaces) is kept so a header only adds its own bytes.
cdef unsigned char _tpl[512]
cdef long _tpl_sum = -1
cdef long long _tpl_mode = -1, _tpl_uid = -1, _tpl_gid = -1


cdef inline long _put_octal(unsigned char* p, int digits, long long v) noexcept:
    cdef long s = 0
    cdef int i
    for i in range(digits - 1, -1, -1):
        p[i] = 48 + (v & 7)
        s += p[i]
        v >>= 3
    p[digits] = 0
    return s


cdef int _make_template(long long mode, long long uid, long long gid) except -1:
    global _tpl_sum, _tpl_mode, _tpl_uid, _tpl_gid
    cdef int i
    cdef long s = 0
    memset(_tpl, 0, 512)
    _put_octal(_tpl + 100, 7, mode)
    _put_octal(_tpl + 108, 7, uid)
    _put_octal(_tpl + 116, 7, gid)
    memset(_tpl + 148, 32, 8)
    _tpl[156] = 48   # '0': regular file
    memcpy(_tpl + 257, b"ustar\x0000", 8)
    _put_octal(_tpl + 329, 7, 0)
    _put_octal(_tpl + 337, 7, 0)
    for i in range(512):
        s += _tpl[i]
    _tpl_sum = s
    _tpl_mode, _tpl_uid, _tpl_gid = mode, uid, gid
    return 0


cdef inline bytes _fast(const char* name, Py_ssize_t n, long long size, long long mtime,
                        long long mode, long long uid, long long gid):
    """The ustar block, or None when the entry needs the general path."""
    cdef Py_ssize_t cut = -1, lo, hi, i
    cdef const char* hit
    if size < 0 or size >= OCTAL11 or mtime < 0 or mtime >= OCTAL11:
        return None
    if n > 100:
        if n > 255:
            return None
        lo = n - 101 if n - 101 > 1 else 1
        hi = n - 2 if n - 2 < 155 else 155
        if lo > hi:
            return None
        hit = <const char*>memchr(name + lo, 47, hi - lo + 1)
        if hit == NULL:
            return None
        cut = hit - name
    if mode != _tpl_mode or uid != _tpl_uid or gid != _tpl_gid:
        if not (0 <= mode < OCTAL7 and 0 <= uid < OCTAL7 and 0 <= gid < OCTAL7):
            return None
        _make_template(mode, uid, gid)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 512)
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
    cdef long s = _tpl_sum
    memcpy(p, _tpl, 512)
    if cut < 0:
        memcpy(p, name, n)
    else:
        memcpy(p + 345, name, cut)
        memcpy(p, name + cut + 1, n - cut - 1)
    for i in range(n):
        s += <unsigned char>name[i]
    if cut >= 0:
        s -= 47   # the '/' at the cut is not stored
    s += _put_octal(p + 124, 11, size)
    s += _put_octal(p + 136, 11, mtime)
    _put_octal(p + 148, 6, s)
    p[155] = 32
    return out


cdef inline bytes _header(object name, long long size, long long mtime, long long mode,
                          long long uid, long long gid):
    cdef Py_ssize_t n
    cdef const char* c
    cdef bytes out
    if type(name) is not str:
        raise TypeError(f"TAR member name must be str, not {type(name).__name__}")
    if PyUnicode_IS_ASCII(name):
        c = PyUnicode_AsUTF8AndSize(name, &n)
        if memchr(c, 0, n) != NULL:
            raise ValueError("NUL in TAR member name")
        out = _fast(c, n, size, mtime, mode, uid, gid)
        if out is not None:
            return out
    return _general(name, size, mtime, mode, uid, gid)


def tar_header(name, long long size, long long mtime=0, long long mode=0o644,
               long long uid=0, long long gid=0):
    """Header bytes (512, or more with a PAX header) for a regular file `name` of `size` bytes."""
    return _header(name, size, mtime, mode, uid, gid)


def tar_entry_size(name, long long size):
    """Bytes the entry takes in the output: header(s) + data padded to 512."""
    cdef Py_ssize_t n, lo, hi
    cdef const char* c
    if size < 0:
        raise ValueError(f"negative size: {size}")
    cdef long long data = (size + 511) & ~511LL
    if type(name) is not str:
        raise TypeError(f"TAR member name must be str, not {type(name).__name__}")
    if PyUnicode_IS_ASCII(name) and size < OCTAL11:
        c = PyUnicode_AsUTF8AndSize(name, &n)
        if memchr(c, 0, n) != NULL:
            raise ValueError("NUL in TAR member name")
        if n <= 100:
            return 512 + data
        if n <= 255:
            lo = n - 101 if n - 101 > 1 else 1
            hi = n - 2 if n - 2 < 155 else 155
            if lo <= hi and memchr(c + lo, 47, hi - lo + 1) != NULL:
                return 512 + data
    return len(_general(name, size, 0, 0o644, 0, 0)) + data


# ---- the general path: PAX records, base-256 fields (same rules as tarheader_py)

def _numeric(value, width):
    if value < 0:
        raise ValueError(f"negative header field: {value}")
    if value < 8 ** (width - 1):
        return b"%0*o\x00" % (width - 1, value)
    if value >= 256 ** (width - 1):
        raise ValueError(f"header field too large: {value}")
    return b"\x80" + value.to_bytes(width - 1, "big")


def _block(name, prefix, size, mtime, mode, uid, gid, typeflag):
    block = bytearray(512)
    block[0:len(name)] = name
    block[100:108] = _numeric(mode, 8)
    block[108:116] = _numeric(uid, 8)
    block[116:124] = _numeric(gid, 8)
    block[124:136] = _numeric(size, 12)
    block[136:148] = _numeric(mtime, 12)
    block[148:156] = b"        "
    block[156] = typeflag
    block[257:265] = b"ustar\x0000"
    block[329:345] = b"0000000\x000000000\x00"
    block[345:345 + len(prefix)] = prefix
    block[148:156] = b"%06o\x00 " % sum(block)
    return bytes(block)


def _split(encoded):
    n = len(encoded)
    lo = max(1, n - 101)
    hi = min(155, n - 2)
    if lo > hi:
        return None
    cut = encoded.find(b"/", lo, hi + 1)
    if cut < 0:
        return None
    return encoded[:cut], encoded[cut + 1:]


def _pax_record(key, value):
    payload = b" %s=%s\n" % (key, value)
    length = len(payload) + 1
    while len(str(length)) + len(payload) != length:
        length = len(str(length)) + len(payload)
    return b"%d%s" % (length, payload)


def _general(name, size, mtime, mode, uid, gid):
    if "\x00" in name:
        raise ValueError("NUL in TAR member name")
    encoded = name.encode("utf-8", "surrogateescape")
    big = size >= OCTAL11
    if name.isascii() and not big:
        if len(encoded) <= 100:
            return _block(encoded, b"", size, mtime, mode, uid, gid, 0x30)
        if len(encoded) <= 255:
            parts = _split(encoded)
            if parts is not None:
                return _block(parts[1], parts[0], size, mtime, mode, uid, gid, 0x30)
    if name.isascii() and len(encoded) <= 100:
        records, ustar_name = b"", encoded
    else:
        records, ustar_name = _pax_record(b"path", encoded), name.encode("ascii", "replace")[:100]
    if big:
        records += _pax_record(b"size", b"%d" % size)
    return (_block(b"././@PaxHeader", b"", len(records), mtime, mode, uid, gid, 0x78)
            + records + bytes((512 - len(records) % 512) % 512)
            + _block(ustar_name, b"", size, mtime, mode, uid, gid, 0x30))
