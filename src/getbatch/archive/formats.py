"""Shard format detection: magic bytes first, the file name's extension only to break ties."""
import os

from .errors import NotAnArchive

FORMATS = ("tar", "tgz", "tar.lz4", "zip")

_EXTENSIONS = ((".tar.gz", "tgz"), (".tgz", "tgz"), (".tar.lz4", "tar.lz4"), (".tar", "tar"),
               (".zip", "zip"))
_HEAD = 512


def format_from_name(name: object) -> str | None:
    """The format a file name's extension suggests, or None."""
    lower = str(name).lower()
    for ext, fmt in _EXTENSIONS:
        if lower.endswith(ext):
            return fmt
    return None


def _tar_header_valid(head: bytes) -> bool:
    """A complete first block whose stored checksum matches (signed or unsigned sum)."""
    if len(head) < _HEAD:
        return False
    field = head[148:156].split(b"\0", 1)[0].strip(b" ")
    if not field or field.strip(b"01234567"):
        return False
    stored = int(field, 8)
    unsigned = sum(head[:148]) + sum(head[156:_HEAD]) + 8 * 0x20
    high = sum(1 for b in head[:148] if b > 127) + sum(1 for b in head[156:_HEAD] if b > 127)
    return stored in (unsigned, unsigned - 256 * high)


def _candidates(head: bytes) -> list[str]:
    found = []
    if head[:2] == b"\x1f\x8b":
        found.append("tgz")
    if head[:4] == b"\x04\x22\x4d\x18":
        found.append("tar.lz4")
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        found.append("zip")
    if head[257:262] == b"ustar" or _tar_header_valid(head):
        found.append("tar")
    return found


def detect_format(path_or_bytes: str | os.PathLike[str] | bytes, name: str | None = None) -> str:
    """'tar', 'tgz', 'tar.lz4' or 'zip' for a shard given by path or by its first bytes.

    `name` (default: the path) names the shard in errors and supplies the extension used when
    the magic bytes fit several formats, or when the first block is all zeros (an empty .tar).
    Raises NotAnArchive otherwise.
    """
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        head = bytes(path_or_bytes[:_HEAD])
        label = name if name is not None else "<bytes>"
    else:
        label = name if name is not None else os.fspath(path_or_bytes)
        try:
            with open(path_or_bytes, "rb") as f:
                head = f.read(_HEAD)
        except IsADirectoryError:
            raise NotAnArchive(label, "is a directory") from None
    hint = format_from_name(label)
    found = _candidates(head)
    if len(found) == 1:
        return found[0]
    if found:
        return hint if hint in found else found[0]
    if hint == "tar" and len(head) == _HEAD and not head.strip(b"\0"):
        return "tar"
    if not head:
        raise NotAnArchive(label, "empty file")
    raise NotAnArchive(label, f"not a tar, tgz, tar.lz4 or zip archive (starts with {head[:8]!r})")
