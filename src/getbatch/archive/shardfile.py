"""The file behind a Shard: opening it (or adopting an open fd), and the identity of the
version of the shard that fd holds.

Everything cached about a shard (its index, in memory and on disk, and a ZIP's parsed
central directory) is keyed by `Identity`, taken with one fstat of the very fd the shard
is then read through, so cached offsets always describe the bytes being read. A PUT
publishes a new version by rename (a new inode); inode numbers are reused after an
unlink, and timestamps may have coarse granularity, so the caller's own version string
(the object store's per-object version counter, an S3 ETag) is part of the identity too.
"""
import os
import stat
from typing import NamedTuple

from .errors import NotAnArchive

# O_NONBLOCK: opening a FIFO planted where a shard should be must not wait for a writer.
# It has no effect on regular files, the only kind a Shard goes on to read.
_OPEN = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK


class Identity(NamedTuple):
    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int
    version: str


def adopt(path_or_fd: int | str | os.PathLike[str],
          name: str | None = None) -> tuple[int, str | None, str]:
    """(fd, path, label) of a shard given by path (opened here) or by an open read-only fd
    (taken over: the caller must not close it). `label` names the shard in errors: `name`,
    else the path, else "<fd N>"."""
    if isinstance(path_or_fd, int) and not isinstance(path_or_fd, bool):
        label = name if name is not None else f"<fd {path_or_fd}>"
        return path_or_fd, None, label
    path = os.fspath(path_or_fd)  # type: ignore[arg-type]  # a bool: fspath's TypeError
    return os.open(path, _OPEN), path, name if name is not None else path


def identify(fd: int, label: object, version: str = "",
             length: int | None = None) -> Identity:
    """The Identity of the shard open on `fd`; NotAnArchive unless it is a regular file.
    `length`: the shard is only the first `length` bytes of the file (a cache file holding
    a copy of a remote shard keeps its trailer after them); default: the whole file."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        what = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise NotAnArchive(label, f"is {what}")
    if not isinstance(version, str):
        raise TypeError(f"shard version must be str, not {type(version).__name__}")
    size = st.st_size
    if length is not None:
        if not 0 <= length <= size:
            raise NotAnArchive(label, f"is {size} bytes long, not the {length} expected")
        size = length
    return Identity(st.st_dev, st.st_ino, size, st.st_mtime_ns, st.st_ctime_ns, version)
