"""Object attributes, and their persistence in extended attributes.

Checksum and version live in `user.getbatch.cksum` (`<type>:<hex>`) and
`user.getbatch.version` (decimal) on the object file itself, so they travel with the
file through `rename` and cost no side files; on a cluster, so does the version stamp
(`user.getbatch.stamp`, stamps.py). Filesystems without user xattrs get
objects without checksum or version; nothing else changes.
"""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass

try:
    import xxhash
except ImportError:  # the checksum is optional: objects are then stored without one
    # the module, or None without it
    xxhash = None  # type: ignore[assignment]

XATTR_CKSUM = "user.getbatch.cksum"
XATTR_VERSION = "user.getbatch.version"
XATTR_STAMP = "user.getbatch.stamp"

# AIS calls XXH64 with seed 0 (cespare/xxhash/v2) "xxhash2"; the SDK shows it verbatim.
CKSUM_TYPE = "xxhash2" if xxhash is not None else ""

# errno values meaning "this filesystem/file has no such xattr support"
_NO_XATTR = {errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENODATA, errno.EPERM, errno.E2BIG}
# reading may also race with a delete or replace of the object: report "unknown"
_NO_META = _NO_XATTR | {errno.ENOENT, errno.ENOTDIR}


@dataclass(frozen=True, slots=True)
class ObjectAttrs:
    """What the store knows about one object.

    `version` is the per-object PUT counter as a decimal string (AIS sends it verbatim in
    `Ais-Version`); `cksum_type`/`cksum_value` are e.g. "xxhash2"/16 hex digits. All
    three are "" when unknown (no xattrs, no xxhash, or not read, as in listings).
    `stamp` names the PUT that wrote these bytes, the same on every copy of it (a cluster
    sets it; "" where none is known).
    """

    size: int
    mtime_ns: int
    atime_ns: int
    version: str = ""
    cksum_type: str = ""
    cksum_value: str = ""
    name: str = ""
    bucket: str = ""
    stamp: str = ""

    @property
    def identity(self) -> tuple[int, str, str, str]:
        """What two copies must share to hold the same bytes: a reader that fails over from
        one copy to another inside an object may resume only when both have this, complete
        (a copy without a checksum proves nothing: see `provably_same`)."""
        return (self.size, self.cksum_type, self.cksum_value, self.stamp)


def provably_same(a: ObjectAttrs, b: ObjectAttrs) -> bool:
    """True when copies with attrs `a` and `b` are known to hold the same bytes."""
    return bool(a.cksum_value) and a.identity == b.identity


NO_META = ("", "", "", "")


def new_hasher() -> xxhash.xxh64 | None:
    return xxhash.xxh64() if xxhash is not None else None


def read_meta(target: str | int, stamp: bool = False) -> tuple[str, str, str, str]:
    """(version, cksum_type, cksum_value, stamp) of a path or an open fd; "" where absent
    (the stamp is read only when asked: single nodes have none)."""
    version = cktype = ckval = st = ""
    try:
        version = os.getxattr(target, XATTR_VERSION).decode("ascii", "replace")
        raw = os.getxattr(target, XATTR_CKSUM).decode("ascii", "replace")
        cktype, _, ckval = raw.partition(":")
        if stamp:
            st = os.getxattr(target, XATTR_STAMP).decode("ascii", "replace")
    except OSError as e:
        if e.errno not in _NO_META:
            raise
    return version, cktype, ckval, st


def read_stamp(target: str | int) -> str:
    """The stamp of a path or an open fd; "" when it has none (or is missing)."""
    try:
        return os.getxattr(target, XATTR_STAMP).decode("ascii", "replace")
    except OSError as e:
        if e.errno not in _NO_META:
            raise
    return ""


def write_meta(fd: int, version: int | str, cktype: str, ckval: str, stamp: str = "") -> bool:
    """Best effort: returns False when the filesystem refuses user xattrs."""
    try:
        os.setxattr(fd, XATTR_VERSION, str(version).encode("ascii"))
        if cktype:
            os.setxattr(fd, XATTR_CKSUM, f"{cktype}:{ckval}".encode("ascii"))
        if stamp:
            os.setxattr(fd, XATTR_STAMP, stamp.encode("ascii"))
    except OSError as e:
        if e.errno not in _NO_XATTR:
            raise
        return False
    return True


def identity_of_fd(fd: int, size: int) -> ObjectAttrs:
    """ObjectAttrs of the version open at `fd` carrying what `provably_same` compares (its
    `size`, checksum and stamp; no times): read from the open file, so it names the bytes
    being read even when the object is replaced meanwhile."""
    _, cktype, ckval, stamp = read_meta(fd, stamp=True)
    return ObjectAttrs(size, 0, 0, cksum_type=cktype, cksum_value=ckval, stamp=stamp)


def attrs_from_stat(st: os.stat_result, meta: tuple[str, str, str, str] = NO_META, name: str = "",
                    bucket: str = "") -> ObjectAttrs:
    return ObjectAttrs(st.st_size, st.st_mtime_ns, st.st_atime_ns, meta[0], meta[1], meta[2],
                       name, bucket, meta[3])
