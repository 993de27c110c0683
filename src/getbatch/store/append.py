"""AIS append sessions (`append_type=append|flush`, `append_handle`).

A session is one file in `.sys/append/` named `<handle>.<owner>`, where `owner` hashes
(bucket, object name): the file name alone ties the handle to its object, so a handle
used for another object simply finds no file, and sessions survive across the server's
worker processes without shared memory. As in AIS, a new session starts from the
object's current content (the SDK's `as_file("a")` appends to the object, and after
a flush the next write opens a new session). Each operation holds an flock on the
session file, so concurrent appends to one handle never interleave.
"""
import errno
import fcntl
import hashlib
import os
import re
import secrets
import stat

from . import attrs as meta
from .errors import BadAppendHandle
from .fsutil import copy_fd, copy_stream, hash_fd

_HANDLE_RE = re.compile(r"[0-9a-f]{32}")


class AppendSessions:
    def __init__(self, store, publisher, dirpath):
        self.store = store
        self.publisher = publisher
        self.dir = dirpath
        os.makedirs(dirpath, exist_ok=True)

    def _session_path(self, bucket, name, handle):
        if type(handle) is not str or not _HANDLE_RE.fullmatch(handle):
            raise BadAppendHandle(bucket, name, handle, "malformed handle")
        owner = hashlib.blake2b(f"{bucket}\0{name}".encode(), digest_size=8).hexdigest()
        return f"{self.dir}/{handle}.{owner}"

    def _open_locked(self, spath, bucket, name, handle):
        try:
            fd = os.open(spath, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise BadAppendHandle(bucket, name, handle) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            # a flush may have published (renamed) this very file while we waited
            if os.stat(spath).st_ino != os.fstat(fd).st_ino:
                raise BadAppendHandle(bucket, name, handle)
        except FileNotFoundError:
            os.close(fd)
            raise BadAppendHandle(bucket, name, handle) from None
        except BaseException:
            os.close(fd)
            raise
        return fd

    def append(self, bucket, name, handle, stream, length=None):
        path = self.store.object_path(bucket, name)
        if not handle:
            return self._start(bucket, name, path, stream, length)
        fd = self._open_locked(self._session_path(bucket, name, handle), bucket, name, handle)
        try:
            start = os.lseek(fd, 0, os.SEEK_END)
            try:
                copy_stream(stream, fd, length, None, bucket, name)
            except BaseException:
                os.ftruncate(fd, start)  # the session stays as it was: the client may retry
                raise
        finally:
            os.close(fd)
        return handle

    def _start(self, bucket, name, path, stream, length):
        handle = secrets.token_hex(16)
        spath = self._session_path(bucket, name, handle)
        fd = os.open(spath, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        try:
            _seed(fd, path)
            copy_stream(stream, fd, length, None, bucket, name)
        except BaseException:
            os.unlink(spath)
            raise
        finally:
            os.close(fd)
        return handle

    def flush(self, bucket, name, handle):
        path = self.store.object_path(bucket, name)
        spath = self._session_path(bucket, name, handle)
        fd = self._open_locked(spath, bucket, name, handle)
        try:
            hasher = meta.new_hasher()
            if hasher is not None:
                hash_fd(fd, hasher)
            cksum = hasher.hexdigest() if hasher is not None else ""
            return self.publisher.publish(fd, spath, bucket, name, path, cksum)
        finally:
            os.close(fd)


def _seed(fd, path):
    """Copy the object's current content, if any, into the new session file."""
    try:
        src = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return
        raise
    try:
        # a directory of other objects has no content; the flush will report the clash
        if stat.S_ISREG(os.fstat(src).st_mode):
            copy_fd(src, fd)
    finally:
        os.close(src)
