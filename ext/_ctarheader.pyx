# cython: language_level=3
"""TAR headers for the output archive (Cython; pure-Python twin: tarheader_py.py).

The common case - an ASCII name that fits ustar and a size below 8 GiB - is one
memcpy of a cached template block plus the name, two octal fields and the checksum.
Everything else (PAX path/size records, base-256 fields) is rare and goes to the twin's
own Python code.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.string cimport memcpy, memset, memchr

from . import tarheader_py

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
    return tarheader_py.tar_header(name, size, mtime, mode, uid, gid)


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
    return tarheader_py.tar_entry_size(name, size)
