# cython: language_level=3
"""A ZIP's central directory as Member records (Cython; pure-Python twin: zipcd_py.py).

Same rules as the twin: find the end record (after any comment), follow the ZIP64
locator, correct offsets for prepended data, decode each entry. Member.offset is the
LOCAL HEADER offset. Bounds checking is off for the module, so every read below is
guarded by hand against the length of the buffer it reads from.
"""
import os

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport uint16_t, uint32_t, uint64_t
from libc.string cimport memchr, memcmp

from getbatch.archive.errors import CorruptArchive, NotAnArchive
from getbatch.archive.member import DIR, FILE, Member

cdef extern from "Python.h":
    object PyUnicode_DecodeUTF8(const char*, Py_ssize_t, const char*)
    object PyUnicode_DecodeASCII(const char*, Py_ssize_t, const char*)
    object PyUnicode_Decode(const char*, Py_ssize_t, const char*, const char*)

cdef uint64_t U32 = 0xFFFFFFFF
cdef Py_ssize_t TAIL = 22 + 65535


cdef inline uint16_t rd16(const unsigned char* p) noexcept:
    return p[0] | (<uint16_t>p[1] << 8)


cdef inline uint32_t rd32(const unsigned char* p) noexcept:
    return p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef inline uint64_t rd64(const unsigned char* p) noexcept:
    return rd32(p) | (<uint64_t>rd32(p + 4) << 32)


cdef Py_ssize_t _find_end(bytes tail):
    """Offset of the end record in `tail`: the last one whose comment length reaches exactly
    to the end of the file (so a comment may contain the signature), else the last one."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(tail)
    cdef const unsigned char* t = <const unsigned char*>PyBytes_AS_STRING(tail)
    cdef Py_ssize_t pos, last = -1
    for pos in range(n - 22, -1, -1):
        if t[pos] == 0x50 and memcmp(t + pos, b"PK\x05\x06", 4) == 0:
            if last < 0:
                last = pos
            if pos + 22 + rd16(t + pos + 20) == n:
                return pos
    return last


cdef tuple _end_record(int fd, long long file_size, object label):
    """(cd size, cd offset, where the central directory must end)."""
    cdef Py_ssize_t tail_len = file_size if file_size < TAIL else TAIL
    cdef bytes tail = os.pread(fd, tail_len, file_size - tail_len)
    cdef Py_ssize_t pos = _find_end(tail)
    cdef const unsigned char* t
    cdef bytes locator, rec
    cdef const unsigned char* r
    if pos < 0:
        raise NotAnArchive(label, "no ZIP end-of-central-directory record")
    t = <const unsigned char*>PyBytes_AS_STRING(tail) + pos
    cdef uint64_t cd_size = rd32(t + 12), cd_offset = rd32(t + 16)
    cdef long long end = file_size - tail_len + pos
    if end >= 20:
        locator = os.pread(fd, 20, end - 20)
        if len(locator) == 20 and locator[:4] == b"PK\x06\x07":
            # ZIP64: the record sits right before its locator (zipfile assumes the same)
            if end < 76:
                raise CorruptArchive(label, "truncated ZIP64 end record")
            rec = os.pread(fd, 56, end - 76)
            if len(rec) != 56 or rec[:4] != b"PK\x06\x06":
                raise CorruptArchive(label, "bad ZIP64 end-of-central-directory record")
            r = <const unsigned char*>PyBytes_AS_STRING(rec)
            cd_size, cd_offset = rd64(r + 40), rd64(r + 48)
            end -= 76
    return cd_size, cd_offset, end


cdef int _zip64_extra(const unsigned char* e, Py_ssize_t n, uint64_t* usize, uint64_t* csize,
                      uint64_t* offset, object label) except -1:
    """Replace the 0xFFFFFFFF fields from the ZIP64 extra field (id 1), in APPNOTE order."""
    cdef Py_ssize_t p = 0, q, stop
    cdef uint16_t tag, length
    cdef uint64_t* fields[3]
    cdef int i
    fields[0], fields[1], fields[2] = usize, csize, offset
    while p + 4 <= n:
        tag, length = rd16(e + p), rd16(e + p + 2)
        if p + 4 + length > n:
            raise CorruptArchive(label, "corrupt extra field in central directory")
        if tag == 1:
            q, stop = p + 4, p + 4 + length
            for i in range(3):
                if fields[i][0] == U32:
                    if q + 8 > stop:
                        raise CorruptArchive(label, "short ZIP64 extra field")
                    fields[i][0] = rd64(e + q)
                    q += 8
            return 0
        p += 4 + length
    return 0


def read_central_directory(int fd, long long file_size, label):
    """Every entry of the ZIP open as `fd` (of `file_size` bytes), in directory order."""
    cdef uint64_t cd_size, cd_offset
    cdef long long end, concat
    cd_size, cd_offset, end = _end_record(fd, file_size, label)
    if cd_size > <uint64_t>end or cd_offset > <uint64_t>end - cd_size:
        raise CorruptArchive(label, "central directory lies outside the file")
    concat = end - <long long>cd_size - <long long>cd_offset
    cdef bytes cd = os.pread(fd, cd_size, cd_offset + concat)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(cd)
    if <uint64_t>n != cd_size:
        raise CorruptArchive(label, "truncated central directory")
    cdef const unsigned char* base = <const unsigned char*>PyBytes_AS_STRING(cd)
    cdef const unsigned char* e
    cdef const unsigned char* nm
    cdef const void* nul
    cdef Py_ssize_t p = 0, q, nlen, elen, clen, i
    cdef uint16_t flags, method
    cdef uint32_t crc
    cdef uint64_t csize, usize, offset
    cdef bint ascii
    cdef list out = []
    while p < n:
        e = base + p
        if p + 46 > n or memcmp(e, b"PK\x01\x02", 4) != 0:
            raise CorruptArchive(label, f"bad central directory entry at {p}")
        flags, method, crc = rd16(e + 8), rd16(e + 10), rd32(e + 16)
        csize, usize = rd32(e + 20), rd32(e + 24)
        nlen, elen, clen = rd16(e + 28), rd16(e + 30), rd16(e + 32)
        offset = rd32(e + 42)
        q = p + 46
        p = q + nlen + elen + clen
        if p > n:
            raise CorruptArchive(label, "central directory entry runs past its end")
        if usize == U32 or csize == U32 or offset == U32:
            _zip64_extra(base + q + nlen, elen, &usize, &csize, &offset, label)
        nm = base + q
        nul = memchr(nm, 0, nlen)
        if nul != NULL:
            nlen = <const unsigned char*>nul - nm
        ascii = True
        for i in range(nlen):
            if nm[i] >= 128:
                ascii = False
                break
        try:
            if ascii:
                name = PyUnicode_DecodeASCII(<const char*>nm, nlen, NULL)
            elif flags & 0x800:
                name = PyUnicode_DecodeUTF8(<const char*>nm, nlen, NULL)
            else:
                name = PyUnicode_Decode(<const char*>nm, nlen, "cp437", NULL)
        except UnicodeDecodeError:
            raise CorruptArchive(label, f"undecodable member name {nm[:nlen]!r}") from None
        out.append(Member(name, <long long>offset + concat, usize,
                          DIR if nlen and nm[nlen - 1] == 47 else FILE, method, csize, crc))
    return out
