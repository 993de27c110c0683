"""Filesystem helpers for durable, atomic writes: stream copy, fsync of directories,
parent-directory creation that never recreates a destroyed bucket, stale-file sweeping."""
import contextlib
import errno
import fcntl
import os
import shutil
import time

from .errors import BucketNotFound, Conflict, IncompleteUpload, InsufficientStorage

CHUNK = 1 << 20


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def copy_stream(stream, fd, length, hasher, bucket, name):
    """Copy `length` bytes (or up to EOF when None) from `stream.read` into `fd`.

    Returns the number of bytes written; raises IncompleteUpload when the stream ends
    before `length` bytes.
    """
    written = 0
    while length is None or written < length:
        want = CHUNK if length is None else min(CHUNK, length - written)
        data = stream.read(want)
        if not data:
            break
        write_all(fd, data)
        if hasher is not None:
            hasher.update(data)
        written += len(data)
    if length is not None and written < length:
        raise IncompleteUpload(bucket, name, length, written)
    return written


def hash_fd(fd, hasher):
    """Feed the whole file behind `fd` to `hasher` (append sessions span processes, so
    their checksum cannot be kept running in memory)."""
    offset = 0
    while True:
        data = os.pread(fd, CHUNK, offset)
        if not data:
            return
        hasher.update(data)
        offset += len(data)


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_parents(bdir, bucket, name):
    """Create the directories between the bucket dir and object `name`.

    Returns the directories whose entries changed (to fsync). Unlike os.makedirs this
    never creates the bucket directory itself: a bucket destroyed meanwhile stays gone.
    """
    parts = name.split("/")[:-1]
    changed = []
    cur = bdir
    for i, part in enumerate(parts):
        parent, cur = cur, f"{cur}/{part}"
        try:
            os.mkdir(cur)
        except FileExistsError:
            if not os.path.isdir(cur):
                raise Conflict(f'cannot store ais://{bucket}/{name}: '
                               f'"{"/".join(parts[:i + 1])}" is an object, not a directory',
                               bucket, name) from None
            continue
        except FileNotFoundError:
            if parent == bdir:
                raise BucketNotFound(bucket) from None
            raise  # an ancestor was pruned concurrently; the caller retries
        except NotADirectoryError:
            raise Conflict(f"cannot store ais://{bucket}/{name}: a parent path is an object",
                           bucket, name) from None
        if not changed:
            changed.append(parent)
        changed.append(cur)
    return changed


def prune_empty_dirs(bdir, name):
    """Remove now-empty directories above object `name`, up to (not including) bdir.

    Returns the deepest directory left, the one whose entries changed last."""
    parts = name.split("/")[:-1]
    while parts:
        path = f"{bdir}/{'/'.join(parts)}"
        try:
            os.rmdir(path)
        except OSError:  # not empty (or re-populated, or pruned by a concurrent delete)
            return path if os.path.isdir(path) else bdir
        parts.pop()
    return bdir


@contextlib.contextmanager
def full_disk_is_507(bucket, name):
    """Turn ENOSPC/EDQUOT from a write into InsufficientStorage (the caller has already
    arranged that nothing partial becomes visible)."""
    try:
        yield
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise InsufficientStorage(bucket, name) from None
        raise


def own(fd):
    """Mark a temp file as being written by this process: `sweep` never takes a file whose
    writer holds this lock (released when the writer closes the file, or dies)."""
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)


def _unowned(path):
    """True when no live process holds `own()` on the file at `path`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def sweep(dirpath, older_than, locked=False):
    """Delete entries of `dirpath` not modified for `older_than` seconds (crash leftovers).
    With `locked`, a file also counts as a leftover only when no live process owns it (see
    `own`), so it can be swept at start-up whatever its age; the age still protects the
    moment between a file's creation and its writer taking the lock."""
    cutoff = time.time() - older_than
    try:
        entries = list(os.scandir(dirpath))
    except FileNotFoundError:
        return 0
    removed = 0
    for entry in entries:
        try:
            if entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            elif locked and not _unowned(entry.path):
                continue
            else:
                os.unlink(entry.path)
            removed += 1
        except FileNotFoundError:
            pass  # another process swept it first
    return removed


def copy_fd(src, dst):
    """Copy all of `src` to `dst` at its current offset, in the kernel where possible."""
    offset = 0
    while True:
        try:
            n = os.sendfile(dst, src, offset, CHUNK * 64)
        except OSError:  # no file-to-file sendfile here: copy through user space
            data = os.pread(src, CHUNK, offset)
            n = len(data)
            write_all(dst, data)
        if n == 0:
            return
        offset += n
