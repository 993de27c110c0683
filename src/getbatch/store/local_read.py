"""Reading the local store for GetBatch: sources by name, a process-wide fd budget.

Planning a batch opens each object it finds (open+fstat in one call instead of a stat now and
an open later: one lookup by name instead of two, the largest per-file cost of a batch of small
objects, measured in bench/RESULTS.md). The fds stay open until the item is sent. Half the fd
limit is shared by all batches of the process; a request takes its share when it starts and
gives it back when it ends; past it, objects are only stat-ed and opened again when sent
(`_LazySource`). This runs once per item of a batch, so it avoids Python calls it can.
"""
import errno
import os
import resource
import stat as st_
import threading

import msgspec

from ..archive.fileio import open_sized
from .backend import BatchReader, Source
from .errors import InvalidName, ObjectNotFound

NOT_FOUND = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EISDIR)
OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC
_OPEN_NOFOLLOW = OPEN_FLAGS | os.O_NOFOLLOW


class FdBudget:
    """How many object fds the batches of one LocalStore (a node has one per process) may hold
    between planning and sending; `free`: None until the first batch, then half the fd limit
    (read then, after the server has raised it, server/startup.py) less what batches hold."""

    def __init__(self, free=None):
        self.free = free
        self._lock = threading.Lock()

    def take(self, n):
        with self._lock:
            if self.free is None:
                self.free = resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 2
            k = min(n, self.free)
            self.free -= k
            return k

    def give(self, n):
        if n:
            with self._lock:
                self.free += n


class FileSource(msgspec.Struct, Source, gc=False):
    """An object version open as an fd (owned: closed by close())."""

    fd: int
    size: int

    def fileno(self):
        return self.fd

    def pread(self, length, offset):
        return os.pread(self.fd, length, offset)

    def read(self, n=-1):
        """Sequential reads from the current offset (a file-like object for WSGI file
        wrappers, which send it with sendfile)."""
        return os.read(self.fd, self.size if n is None or n < 0 else n)

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _LazySource(msgspec.Struct, Source, gc=False):
    """An object found while planning but opened only when first read (past the fd budget)."""

    size: int
    path: str
    bucket: str
    name: str
    fd: int = -1
    lazy = True

    def fileno(self):
        if self.fd < 0:
            try:
                self.fd = os.open(self.path, OPEN_FLAGS)
            except OSError as e:
                raise OSError(e.errno, f"ais://{self.bucket}/{self.name} cannot be opened "
                                       f"any more: {e.strerror}") from None
        return self.fd

    def pread(self, length, offset):
        return os.pread(self.fileno(), length, offset)

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class LocalBatchReader(BatchReader):
    """One request's reads of a LocalStore: directories found free of symlinks are
    remembered, and objects are opened while the request's share of the fd budget lasts."""

    def __init__(self, store, n_entries, budget=None):
        super().__init__(store, budget)
        self._root = store.root
        self._safe = set()   # (bucket, parent dir) checked to hold no symlink
        self._taken = store.fds.take(n_entries)
        self._fds = self._taken

    def source(self, bucket, name):
        if self._fds > 0:
            # the common case inline: a name in a directory already checked, one open+fstat
            parent = name.rpartition("/")[0]
            if not parent or (bucket, parent) in self._safe:
                try:
                    fd, size = open_sized(f"{self._root}/{bucket}/{name}", _OPEN_NOFOLLOW)
                except OSError as e:
                    if e.errno != errno.ELOOP:
                        raise lookup_error(e, bucket, name) from None
                    fd, size = self._open_checked(bucket, name)
            else:
                fd, size = self._open_checked(bucket, name)
            if fd < 0:
                raise ObjectNotFound(bucket, name)
            self._fds -= 1
            return FileSource(fd, size)
        path, size = self._locate(bucket, name)
        return _LazySource(size, path, bucket, name)

    def slot(self, src, bucket, name):
        """What a plan keeps of `src`, a source this reader gave for (bucket, name), instead of
        the object: its fd (now the plan's to close), LAZY (-1: the plan opens it with
        `open_found`), or None when only the source itself can open it."""
        if type(src) is FileSource:
            fd, src.fd = src.fd, -1
            return fd
        if type(src) is _LazySource and src.path == self._checked_path(bucket, name):
            return -1
        return None

    def open_found(self, bucket, name):
        """An fd of an object found while planning (`slot` gave LAZY) when it is sent."""
        try:
            return os.open(f"{self._root}/{bucket}/{name}", OPEN_FLAGS)
        except OSError as e:
            raise OSError(e.errno, f"ais://{bucket}/{name} cannot be opened any more: "
                                   f"{e.strerror}") from None

    def _checked_path(self, bucket, name):
        """The object's path once its parent dir is known free of symlinks, else None."""
        parent = name.rpartition("/")[0]
        if parent and (bucket, parent) not in self._safe:
            return None
        return f"{self._root}/{bucket}/{name}"

    def _remember(self, bucket, name):
        parent = name.rpartition("/")[0]
        if parent:
            pdir = f"{self._root}/{bucket}/{parent}"
            if os.path.realpath(pdir) == pdir:
                self._safe.add((bucket, parent))

    def _open_checked(self, bucket, name):
        """(fd, size) after `object_path` has checked every component (a final symlink is
        followed only once it is known to stay in the bucket)."""
        try:
            fd, size = open_sized(self.backend.object_path(bucket, name), OPEN_FLAGS)
        except OSError as e:
            raise lookup_error(e, bucket, name) from None
        self._remember(bucket, name)
        return fd, size

    def _locate(self, bucket, name):
        """(path, size) of a regular-file object, without opening it."""
        path = self._checked_path(bucket, name)
        if path is not None:
            try:
                st = os.lstat(path)
            except OSError as e:
                raise lookup_error(e, bucket, name) from None
            if st_.S_ISREG(st.st_mode):
                return path, st.st_size
        path = self.backend.object_path(bucket, name)
        try:
            st = os.stat(path)
        except OSError as e:
            raise lookup_error(e, bucket, name) from None
        if not st_.S_ISREG(st.st_mode):
            raise ObjectNotFound(bucket, name)
        self._remember(bucket, name)
        return path, st.st_size

    def close(self):
        super().close()
        self.backend.fds.give(self._taken)
        self._taken = self._fds = 0


def lookup_error(e, bucket, name):
    """The store error for an OSError met looking up object `name` by path."""
    if e.errno in NOT_FOUND:
        return ObjectNotFound(bucket, name)
    if e.errno == errno.ENAMETOOLONG:
        return InvalidName("object name", name, "too long for the filesystem", bucket)
    return e
