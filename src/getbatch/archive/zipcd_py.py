"""Pure-Python twin of ext/_czipcd.pyx: a ZIP's central directory as Member records.

Finds the end-of-central-directory record (after any archive comment), follows the
ZIP64 locator when present, then decodes every central-directory entry. Member.offset
is the LOCAL HEADER offset (the data offset needs the local header's own name/extra
lengths and is resolved by ZipShard when first needed). Offsets are corrected for data
prepended to the archive (self-extractors), as zipfile does. Every length is checked
against the bytes actually read: damage raises CorruptArchive, never IndexError. A name
longer than member.NAME_MAX bytes is CorruptArchive.
"""
import os
import struct
from collections.abc import Callable, Sequence

from .errors import CorruptArchive, NotAnArchive
from .member import DIR, FILE, NAME_MAX, Member
from .zipformat import (CENTRAL, END, END64, FLAG_UTF8, LOCATOR64, MAX_COMMENT, U32,
                        ZIP64_EXTRA)

# pread(length, offset) -> the bytes there (fewer at the end of the file)
Pread = Callable[[int, int], bytes]
_TAIL = END.size + MAX_COMMENT             # the end record + the longest comment
_COMMENT_LEN = END.offset["comment_len"]


def _find_end(tail: bytes) -> int:
    """Offset of the end record in `tail`: the last one whose comment length reaches exactly
    to the end of the file (so a comment may contain the signature), else the last one."""
    last = pos = tail.rfind(END.signature, 0, max(len(tail) - END.size + 4, 0))
    while pos >= 0:
        if pos + END.size + tail[pos + _COMMENT_LEN] + (tail[pos + _COMMENT_LEN + 1] << 8) \
                == len(tail):
            return pos
        pos = tail.rfind(END.signature, 0, pos + 3)
    return last


def _end_record(pread: Pread, file_size: int, label: object) -> tuple[int, int, int]:
    """(cd size, cd offset, where the central directory must end)."""
    tail_len = min(file_size, _TAIL)
    tail = pread(tail_len, file_size - tail_len)
    pos = _find_end(tail)
    if pos < 0:
        raise NotAnArchive(label, "no ZIP end-of-central-directory record")
    fields = END.struct.unpack_from(tail, pos)
    cd_size, cd_offset = fields[5], fields[6]
    end = file_size - tail_len + pos
    if end >= LOCATOR64.size:
        locator = pread(LOCATOR64.size, end - LOCATOR64.size)
        if len(locator) == LOCATOR64.size and locator[:4] == LOCATOR64.signature:
            # ZIP64: the record sits right before its locator (zipfile assumes the same)
            start = end - LOCATOR64.size - END64.size
            if start < 0:
                raise CorruptArchive(label, "truncated ZIP64 end record")
            rec = pread(END64.size, start)
            if len(rec) != END64.size or rec[:4] != END64.signature:
                raise CorruptArchive(label, "bad ZIP64 end-of-central-directory record")
            cd_size, cd_offset = END64.struct.unpack(rec)[8:10]
            end = start
    return cd_size, cd_offset, end


def _zip64_extra(extra: bytes, usize: int, csize: int, offset: int,
                 label: object) -> Sequence[int]:
    """Replace the 0xFFFFFFFF fields from the ZIP64 extra field, in APPNOTE order."""
    p, n = 0, len(extra)
    while p + 4 <= n:
        tag, length = struct.unpack_from("<HH", extra, p)
        if p + 4 + length > n:
            raise CorruptArchive(label, "corrupt extra field in central directory")
        if tag == ZIP64_EXTRA:
            q, stop = p + 4, p + 4 + length
            values = []
            for field in (usize, csize, offset):
                if field == U32:
                    if q + 8 > stop:
                        raise CorruptArchive(label, "short ZIP64 extra field")
                    field = struct.unpack_from("<Q", extra, q)[0]
                    q += 8
                values.append(field)
            return values
        p += 4 + length
    return usize, csize, offset


def read_central_directory(fd: int, file_size: int, label: object) -> list[Member]:
    """Every entry of the ZIP open as `fd` (of `file_size` bytes), in directory order."""
    return read_central_directory_pread(lambda n, off: os.pread(fd, n, off), file_size, label)


def read_central_directory_pread(pread: Pread, file_size: int, label: object) -> list[Member]:
    """read_central_directory through `pread(length, offset) -> bytes` (a remote shard's
    ranged reads): the end records and the directory are the only bytes read."""
    cd_size, cd_offset, end = _end_record(pread, file_size, label)
    concat = end - cd_size - cd_offset
    if concat < 0:
        raise CorruptArchive(label, "central directory lies outside the file")
    cd = pread(cd_size, cd_offset + concat)
    if len(cd) != cd_size:
        raise CorruptArchive(label, "truncated central directory")
    out = []
    p = 0
    while p < cd_size:
        if p + CENTRAL.size > cd_size or cd[p:p + 4] != CENTRAL.signature:
            raise CorruptArchive(label, f"bad central directory entry at {p}")
        (_, _, _, flags, method, _, _, crc, csize, usize, nlen, elen, clen,
         _, _, _, offset) = CENTRAL.struct.unpack_from(cd, p)
        q = p + CENTRAL.size
        p = q + nlen + elen + clen
        if p > cd_size:
            raise CorruptArchive(label, "central directory entry runs past its end")
        raw = cd[q:q + nlen]
        if U32 in (usize, csize, offset):
            usize, csize, offset = _zip64_extra(cd[q + nlen:q + nlen + elen], usize, csize,
                                                offset, label)
        nul = raw.find(b"\x00")
        if nul >= 0:
            raw = raw[:nul]
        if len(raw) > NAME_MAX:
            raise CorruptArchive(label, f"member name of {len(raw)} bytes (limit {NAME_MAX})")
        try:
            name = raw.decode("utf-8" if flags & FLAG_UTF8 else "cp437")
        except UnicodeDecodeError:
            raise CorruptArchive(label, f"undecodable member name {raw!r}") from None
        out.append(Member(name, offset + concat, usize, DIR if name.endswith("/") else FILE,
                          method, csize, crc))
    return out
