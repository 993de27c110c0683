"""A `__404__/` placeholder that takes exactly the bytes of the entry it replaces in a TAR.

When an item fails after the status line of a `.tar` answer (its owner died and no replica
has it), the answer's `Content-Length` already counts that item's header and data. The
placeholder then goes out as a PAX extended header holding only a `comment` record (which
readers ignore), sized to fill the gap, followed by the usual zero-length placeholder entry:
the archive stays well-formed, the length stays true, and a reader sees the placeholder
where the item was.
"""
import tarfile

from ..archive import tar_header
from ..archive.tarblock import BLOCK


def _comment_record(length):
    """A PAX `comment` record of exactly `length` bytes (a multiple of 512 here): the length
    field counts its own digits."""
    fill = length - len(str(length)) - len(" comment=\n")
    return b"%d comment=%s\n" % (length, b"." * fill)


def _pax_block(records_len):
    ti = tarfile.TarInfo("././@PaxHeader")
    ti.type = tarfile.XHDTYPE
    ti.size = records_len
    ti.mode = 0o644
    ti.mtime = 0
    return ti.tobuf(tarfile.USTAR_FORMAT)


def padded_placeholder(name, frame_len):
    """The frame of placeholder `name` in exactly `frame_len` bytes, or None when it cannot
    fit (its own header is longer than the entry it replaces)."""
    head = tar_header(name, 0)
    gap = frame_len - len(head)
    if gap == 0:
        return head
    if gap < BLOCK or len(head) != BLOCK:
        # a name that needs a PAX header of its own would need the two merged: not done
        return None
    records = b"" if gap == BLOCK else _comment_record(gap - BLOCK)
    return _pax_block(len(records)) + records + head
