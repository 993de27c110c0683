# cython: language_level=3
"""A ZIP's central directory as Member records (Cython; pure-Python twin: zipcd_py.py).

Same rules as the twin: find the end record (after any comment), follow the ZIP64
locator, correct offsets for prepended data, decode each entry, refuse names longer than
member.NAME_MAX. Member.offset is the LOCAL HEADER offset. Record sizes and field offsets
come from zipformat.py (read once at import). Bounds checking is off for the module, so
every read below is guarded by hand against the length of the buffer it reads from.
"""
import os

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport uint16_t, uint32_t, uint64_t
from libc.string cimport memchr, memcmp

from .errors import CorruptArchive, NotAnArchive
from .member import DIR, FILE, NAME_MAX, Member
from . import zipformat as zf

cdef extern from "Python.h":
    object PyUnicode_DecodeUTF8(const char*, Py_ssize_t, const char*)
    object PyUnicode_DecodeASCII(const char*, Py_ssize_t, const char*)
    object PyUnicode_Decode(const char*, Py_ssize_t, const char*, const char*)

cdef uint64_t U32 = zf.U32
cdef Py_ssize_t NAME_LIMIT = NAME_MAX
cdef bytes SIG_END = zf.END.signature, SIG_CENTRAL = zf.CENTRAL.signature
cdef bytes SIG_END64 = zf.END64.signature, SIG_LOCATOR64 = zf.LOCATOR64.signature
cdef Py_ssize_t END_SIZE = zf.END.size, END64_SIZE = zf.END64.size
cdef Py_ssize_t LOCATOR64_SIZE = zf.LOCATOR64.size, CENTRAL_SIZE = zf.CENTRAL.size
cdef Py_ssize_t TAIL = END_SIZE + zf.MAX_COMMENT
cdef Py_ssize_t END_COMMENT_LEN = zf.END.offset["comment_len"]
cdef Py_ssize_t END_CD_SIZE = zf.END.offset["cd_size"], END_CD_OFFSET = zf.END.offset["cd_offset"]
cdef Py_ssize_t END64_CD_SIZE = zf.END64.offset["cd_size"]
cdef Py_ssize_t END64_CD_OFFSET = zf.END64.offset["cd_offset"]
cdef Py_ssize_t CD_FLAGS = zf.CENTRAL.offset["flags"], CD_METHOD = zf.CENTRAL.offset["method"]
cdef Py_ssize_t CD_CRC = zf.CENTRAL.offset["crc"], CD_CSIZE = zf.CENTRAL.offset["csize"]
cdef Py_ssize_t CD_USIZE = zf.CENTRAL.offset["usize"]
cdef Py_ssize_t CD_NAME_LEN = zf.CENTRAL.offset["name_len"]
cdef Py_ssize_t CD_EXTRA_LEN = zf.CENTRAL.offset["extra_len"]
cdef Py_ssize_t CD_COMMENT_LEN = zf.CENTRAL.offset["comment_len"]
cdef Py_ssize_t CD_OFFSET = zf.CENTRAL.offset["offset"]
cdef uint16_t UTF8 = zf.FLAG_UTF8, ZIP64_EXTRA = zf.ZIP64_EXTRA


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
    cdef const char* sig = SIG_END
    for pos in range(n - END_SIZE, -1, -1):
        if t[pos] == 0x50 and memcmp(t + pos, sig, 4) == 0:
            if last < 0:
                last = pos
            if pos + END_SIZE + rd16(t + pos + END_COMMENT_LEN) == n:
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
    cdef uint64_t cd_size = rd32(t + END_CD_SIZE), cd_offset = rd32(t + END_CD_OFFSET)
    cdef long long end = file_size - tail_len + pos
    cdef long long start
    if end >= LOCATOR64_SIZE:
        locator = os.pread(fd, LOCATOR64_SIZE, end - LOCATOR64_SIZE)
        if len(locator) == LOCATOR64_SIZE and locator[:4] == SIG_LOCATOR64:
            # ZIP64: the record sits right before its locator (zipfile assumes the same)
            start = end - LOCATOR64_SIZE - END64_SIZE
            if start < 0:
                raise CorruptArchive(label, "truncated ZIP64 end record")
            rec = os.pread(fd, END64_SIZE, start)
            if len(rec) != END64_SIZE or rec[:4] != SIG_END64:
                raise CorruptArchive(label, "bad ZIP64 end-of-central-directory record")
            r = <const unsigned char*>PyBytes_AS_STRING(rec)
            cd_size, cd_offset = rd64(r + END64_CD_SIZE), rd64(r + END64_CD_OFFSET)
            end = start
    return cd_size, cd_offset, end


cdef int _zip64_extra(const unsigned char* e, Py_ssize_t n, uint64_t* usize, uint64_t* csize,
                      uint64_t* offset, object label) except -1:
    """Replace the 0xFFFFFFFF fields from the ZIP64 extra field, in APPNOTE order."""
    cdef Py_ssize_t p = 0, q, stop
    cdef uint16_t tag, length
    cdef uint64_t* fields[3]
    cdef int i
    fields[0], fields[1], fields[2] = usize, csize, offset
    while p + 4 <= n:
        tag, length = rd16(e + p), rd16(e + p + 2)
        if p + 4 + length > n:
            raise CorruptArchive(label, "corrupt extra field in central directory")
        if tag == ZIP64_EXTRA:
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
    cdef const char* csig = SIG_CENTRAL
    while p < n:
        e = base + p
        if p + CENTRAL_SIZE > n or memcmp(e, csig, 4) != 0:
            raise CorruptArchive(label, f"bad central directory entry at {p}")
        flags, method, crc = rd16(e + CD_FLAGS), rd16(e + CD_METHOD), rd32(e + CD_CRC)
        csize, usize = rd32(e + CD_CSIZE), rd32(e + CD_USIZE)
        nlen, elen = rd16(e + CD_NAME_LEN), rd16(e + CD_EXTRA_LEN)
        clen = rd16(e + CD_COMMENT_LEN)
        offset = rd32(e + CD_OFFSET)
        q = p + CENTRAL_SIZE
        p = q + nlen + elen + clen
        if p > n:
            raise CorruptArchive(label, "central directory entry runs past its end")
        if usize == U32 or csize == U32 or offset == U32:
            _zip64_extra(base + q + nlen, elen, &usize, &csize, &offset, label)
        nm = base + q
        nul = memchr(nm, 0, nlen)
        if nul != NULL:
            nlen = <const unsigned char*>nul - nm
        if nlen > NAME_LIMIT:
            raise CorruptArchive(label, f"member name of {nlen} bytes (limit {NAME_LIMIT})")
        ascii = True
        for i in range(nlen):
            if nm[i] >= 128:
                ascii = False
                break
        try:
            if ascii:
                name = PyUnicode_DecodeASCII(<const char*>nm, nlen, NULL)
            elif flags & UTF8:
                name = PyUnicode_DecodeUTF8(<const char*>nm, nlen, NULL)
            else:
                name = PyUnicode_Decode(<const char*>nm, nlen, "cp437", NULL)
        except UnicodeDecodeError:
            raise CorruptArchive(label, f"undecodable member name {nm[:nlen]!r}") from None
        out.append(Member(name, <long long>offset + concat, usize,
                          DIR if nlen and nm[nlen - 1] == 47 else FILE, method, csize, crc))
    return out
