"""Pure-Python twin of ext/_czipcd.pyx: a ZIP's central directory as Member records.

Finds the end-of-central-directory record (after any archive comment), follows the
ZIP64 locator when present, then decodes every central-directory entry. Member.offset
is the LOCAL HEADER offset (the data offset needs the local header's own name/extra
lengths and is resolved by ZipShard when first needed). Offsets are corrected for data
prepended to the archive (self-extractors), as zipfile does. Every length is checked
against the bytes actually read: damage raises CorruptArchive, never IndexError.
"""
import os
import struct

from .errors import CorruptArchive, NotAnArchive
from .member import DIR, FILE, Member

_EOCD_SIG = b"PK\x05\x06"
_EOCD = struct.Struct("<HHHHIIH")          # after the signature
_LOCATOR = struct.Struct("<IIQI")
_EOCD64 = struct.Struct("<IQHHIIQQQQ")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_TAIL = 22 + 65535                         # EOCD + the longest comment
_U32 = 0xFFFFFFFF


def _find_end(tail):
    """Offset of the end record in `tail`: the last one whose comment length reaches exactly
    to the end of the file (so a comment may contain the signature), else the last one."""
    last = pos = tail.rfind(_EOCD_SIG, 0, max(len(tail) - 18, 0))
    while pos >= 0:
        if pos + 22 + tail[pos + 20] + (tail[pos + 21] << 8) == len(tail):
            return pos
        pos = tail.rfind(_EOCD_SIG, 0, pos + 3)
    return last


def _end_record(fd, file_size, label):
    """(cd size, cd offset, where the central directory must end)."""
    tail_len = min(file_size, _TAIL)
    tail = os.pread(fd, tail_len, file_size - tail_len)
    pos = _find_end(tail)
    if pos < 0:
        raise NotAnArchive(label, "no ZIP end-of-central-directory record")
    _, _, _, _, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, pos + 4)
    end = file_size - tail_len + pos
    if end >= 20:
        locator = os.pread(fd, 20, end - 20)
        if len(locator) == 20 and locator[:4] == b"PK\x06\x07":
            # ZIP64: the record sits right before its locator (zipfile assumes the same)
            if end < 76:
                raise CorruptArchive(label, "truncated ZIP64 end record")
            rec = os.pread(fd, 56, end - 76)
            if len(rec) != 56 or rec[:4] != b"PK\x06\x06":
                raise CorruptArchive(label, "bad ZIP64 end-of-central-directory record")
            _, _, _, _, _, _, _, _, cd_size, cd_offset = _EOCD64.unpack(rec)
            end -= 76
    return cd_size, cd_offset, end


def _zip64_extra(extra, usize, csize, offset, label):
    """Replace the 0xFFFFFFFF fields from the ZIP64 extra field (id 1), in APPNOTE order."""
    p, n = 0, len(extra)
    while p + 4 <= n:
        tag, length = struct.unpack_from("<HH", extra, p)
        if p + 4 + length > n:
            raise CorruptArchive(label, "corrupt extra field in central directory")
        if tag == 1:
            q, stop = p + 4, p + 4 + length
            values = []
            for field in (usize, csize, offset):
                if field == _U32:
                    if q + 8 > stop:
                        raise CorruptArchive(label, "short ZIP64 extra field")
                    field = struct.unpack_from("<Q", extra, q)[0]
                    q += 8
                values.append(field)
            return values
        p += 4 + length
    return usize, csize, offset


def read_central_directory(fd, file_size, label):
    """Every entry of the ZIP open as `fd` (of `file_size` bytes), in directory order."""
    cd_size, cd_offset, end = _end_record(fd, file_size, label)
    concat = end - cd_size - cd_offset
    if concat < 0:
        raise CorruptArchive(label, "central directory lies outside the file")
    cd = os.pread(fd, cd_size, cd_offset + concat)
    if len(cd) != cd_size:
        raise CorruptArchive(label, "truncated central directory")
    out = []
    p = 0
    while p < cd_size:
        if p + 46 > cd_size or cd[p:p + 4] != b"PK\x01\x02":
            raise CorruptArchive(label, f"bad central directory entry at {p}")
        (_, _, _, flags, method, _, _, crc, csize, usize, nlen, elen, clen,
         _, _, _, offset) = _CENTRAL.unpack_from(cd, p)
        q = p + 46
        p = q + nlen + elen + clen
        if p > cd_size:
            raise CorruptArchive(label, "central directory entry runs past its end")
        raw = cd[q:q + nlen]
        if _U32 in (usize, csize, offset):
            usize, csize, offset = _zip64_extra(cd[q + nlen:q + nlen + elen], usize, csize,
                                                offset, label)
        nul = raw.find(b"\x00")
        if nul >= 0:
            raw = raw[:nul]
        try:
            name = raw.decode("utf-8" if flags & 0x800 else "cp437")
        except UnicodeDecodeError:
            raise CorruptArchive(label, f"undecodable member name {raw!r}") from None
        out.append(Member(name, offset + concat, usize, DIR if name.endswith("/") else FILE,
                          method, csize, crc))
    return out
