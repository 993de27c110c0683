"""LocalStore: buckets and objects as directories and files under one data directory.

Layout (everything on one filesystem, so `rename` publishes atomically):

    <data_dir>/ais/<bucket>/<object name>   objects
    <data_dir>/.sys/tmp/                    in-flight PUTs
    <data_dir>/.sys/append/                 append sessions (AIS append/flush)
    <data_dir>/.sys/trash/                  destroyed buckets being removed
    <data_dir>/.sys/shard-index/            persisted shard indexes (`index_dir`)
    <data_dir>/.sys/locks/                  cross-process locks

Several server worker processes share one data directory, so nothing is cached that
another process could change: bucket existence is one stat per call.
"""
import errno
import fcntl
import os
import secrets
import shutil
import stat as st_

from ..archive.fileio import open_sized
from . import attrs as meta
from .append import AppendSessions
from .attrs import attrs_from_stat
from .errors import BucketExists, BucketNotFound, Conflict, InvalidName, ObjectNotFound
from .fsutil import copy_stream, fsync_dir, make_parents, prune_empty_dirs, sweep
from .listing import walk_names
from .names import validate_bucket_name, validate_object_name

MAX_PAGE = 10_000
STALE_AFTER = 3600.0  # seconds without modification before a temp file counts as a leftover
_NAME_MAX = 255       # bytes per path component (ext4, xfs, btrfs)
_PATH_MAX = 3072      # bytes per name: leaves room for the data dir within PATH_MAX (4096)
_PUBLISH_RETRIES = 5

_NOT_FOUND = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EISDIR)
_OPEN = os.O_RDONLY | os.O_CLOEXEC
_OPEN_NOFOLLOW = _OPEN | os.O_NOFOLLOW


class LocalStore:
    def __init__(self, data_dir, *, fsync=True, stale_after=STALE_AFTER):
        # realpath once: symlink confinement compares resolved paths against it
        self.data_dir = os.path.realpath(data_dir)
        self.fsync = fsync
        self._root = os.path.join(self.data_dir, "ais")
        sysdir = os.path.join(self.data_dir, ".sys")
        self._tmp = os.path.join(sysdir, "tmp")
        self._trash = os.path.join(sysdir, "trash")
        self.index_dir = os.path.join(sysdir, "shard-index")
        locks = os.path.join(sysdir, "locks")
        for d in (self._root, self._tmp, self._trash, self.index_dir, locks):
            os.makedirs(d, exist_ok=True)
        self._version_lock = os.path.join(locks, "version")
        self._appends = AppendSessions(self, os.path.join(sysdir, "append"))
        sweep(self._tmp, stale_after)
        sweep(self._appends.dir, stale_after)
        sweep(self._trash, 0)
        self._xattrs = self._probe_xattrs()

    def _probe_xattrs(self):
        fd, path = self._mkstemp()
        try:
            return meta.write_meta(fd, 0, "", "")
        finally:
            os.close(fd)
            os.unlink(path)

    def _mkstemp(self, dirpath=None):
        path = os.path.join(dirpath or self._tmp, secrets.token_hex(16))
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666), path

    # ---- buckets -------------------------------------------------------------------

    def _bucket_dir(self, bucket):
        return f"{self._root}/{bucket}"

    def has_bucket(self, name):
        try:
            validate_bucket_name(name)
        except InvalidName:
            return False
        return os.path.isdir(self._bucket_dir(name))

    def require_bucket(self, name):
        validate_bucket_name(name)
        if not os.path.isdir(self._bucket_dir(name)):
            raise BucketNotFound(name)

    def list_buckets(self):
        out = []
        for e in os.scandir(self._root):
            if e.is_dir() and self.has_bucket(e.name):
                out.append(e.name)
        return sorted(out)

    def create_bucket(self, name):
        validate_bucket_name(name)
        try:
            os.mkdir(self._bucket_dir(name))
        except FileExistsError:
            raise BucketExists(name) from None
        if self.fsync:
            fsync_dir(self._root)

    def destroy_bucket(self, name):
        """Rename the bucket away first (atomic: it is gone for every process at once),
        then delete its contents at leisure."""
        validate_bucket_name(name)
        doomed = os.path.join(self._trash, f"{name}.{secrets.token_hex(8)}")
        try:
            os.rename(self._bucket_dir(name), doomed)
        except (FileNotFoundError, NotADirectoryError):
            raise BucketNotFound(name) from None
        if self.fsync:
            fsync_dir(self._root)
        shutil.rmtree(doomed, ignore_errors=True)

    # ---- names and paths -------------------------------------------------------------

    def object_path(self, bucket, name):
        """Validated filesystem path of object `name`, confined to the bucket directory.

        Names are already free of `..` and absolute forms, so only symlinks can lead out.
        We lstat each component below the bucket dir and resolve with realpath only when
        one is a symlink: that costs one lstat per component in the common case, where
        realpath would lstat every component of the data dir too. O_NOFOLLOW/openat walks
        would be race-free, but callers (sendfile, the archive library) need a path, and
        whoever can plant symlinks in the data dir can already rewrite any object: this
        guards against misplaced links, not against a racing local attacker.
        """
        validate_bucket_name(bucket)
        validate_object_name(name)
        try:
            encoded = name.encode()
        except UnicodeEncodeError:
            raise InvalidName("object name", name, "not valid UTF-8", bucket) from None
        if len(encoded) > _NAME_MAX:
            if len(encoded) > _PATH_MAX:
                raise InvalidName("object name", name, f"longer than {_PATH_MAX} bytes", bucket)
            if any(len(p) > _NAME_MAX for p in encoded.split(b"/")):
                raise InvalidName("object name", name,
                                  f"path component longer than {_NAME_MAX} bytes", bucket)
        bdir = self._bucket_dir(bucket)
        path = f"{bdir}/{name}"
        cur = bdir
        for i, part in enumerate(name.split("/")):
            cur = f"{cur}/{part}"
            try:
                mode = os.lstat(cur).st_mode
            except OSError:
                # missing (or under a non-directory): nothing below can be a link. The
                # bucket is checked only here, saving a syscall when the object exists.
                if i == 0 and not os.path.isdir(bdir):
                    raise BucketNotFound(bucket) from None
                break
            if st_.S_ISLNK(mode):
                real = os.path.realpath(path)
                if not real.startswith(os.path.realpath(bdir) + "/"):
                    raise InvalidName("object name", name,
                                      "resolves outside the bucket (symlink)", bucket)
                break
        return path

    # ---- objects -----------------------------------------------------------------------

    def _stat_file(self, bucket, name, quick=False):
        """(path, stat result) of a regular-file object; ObjectNotFound otherwise.
        `quick`: one lstat of the unchecked path; the caller must check the result."""
        path = f"{self._root}/{bucket}/{name}" if quick else self.object_path(bucket, name)
        try:
            st = os.lstat(path) if quick else os.stat(path)
        except OSError as e:
            if e.errno in _NOT_FOUND:
                raise ObjectNotFound(bucket, name) from None
            raise
        if not quick and not st_.S_ISREG(st.st_mode):
            raise ObjectNotFound(bucket, name)
        return path, st

    def stat(self, bucket, name):
        path, st = self._stat_file(bucket, name)
        m = meta.read_meta(path) if self._xattrs else ("", "", "")
        return attrs_from_stat(st, m, path, name, bucket)

    def locate(self, bucket, name, safe_dirs):
        """(path, size) of a regular-file object, for the batch path that stats thousands
        of objects per request. The caller has validated the name and the bucket; no
        xattrs are read; `safe_dirs`, a dict the caller keeps for one batch, remembers
        parent directories found free of symlinks, so most objects cost one lstat."""
        parent = name.rpartition("/")[0]
        path, st = self._stat_file(bucket, name, quick=True)
        if st_.S_ISREG(st.st_mode) and (not parent or (bucket, parent) in safe_dirs):
            return path, st.st_size
        path, st = self._stat_file(bucket, name)
        pdir = f"{self._root}/{bucket}/{parent}"
        if parent and os.path.realpath(pdir) == pdir:
            safe_dirs[(bucket, parent)] = True
        return path, st.st_size

    def open_object(self, bucket, name, safe_dirs):
        """(fd, size) of a regular-file object, opened for reading: `locate` for callers that
        will read the object soon, which spares them a second lookup by name. The caller
        closes the fd. A final-component symlink is only followed after `object_path` has
        checked where it leads."""
        parent = name.rpartition("/")[0]
        path = f"{self._root}/{bucket}/{name}"
        flags = _OPEN_NOFOLLOW
        if parent and (bucket, parent) not in safe_dirs:
            path, _ = self.locate(bucket, name, safe_dirs)
            flags = _OPEN
        try:
            fd, size = open_sized(path, flags)
        except OSError as e:
            if e.errno != errno.ELOOP or flags == _OPEN:
                if e.errno in _NOT_FOUND:
                    raise ObjectNotFound(bucket, name) from None
                raise
            fd, size = open_sized(self.object_path(bucket, name), _OPEN)
        if fd < 0:
            raise ObjectNotFound(bucket, name)
        return fd, size

    def open_read(self, bucket, name):
        """(file, attrs): an unbuffered binary file (`io.FileIO`, with `fileno()` for
        sendfile; the caller closes it) and the attributes of that very file, which stay
        valid even if the object is replaced meanwhile."""
        path = self.object_path(bucket, name)
        try:
            f = open(path, "rb", buffering=0)
        except OSError as e:
            if e.errno in _NOT_FOUND:
                raise ObjectNotFound(bucket, name) from None
            raise
        try:
            st = os.fstat(f.fileno())
            if not st_.S_ISREG(st.st_mode):
                raise ObjectNotFound(bucket, name)
            m = meta.read_meta(f.fileno()) if self._xattrs else ("", "", "")
        except BaseException:
            f.close()
            raise
        return f, attrs_from_stat(st, m, path, name, bucket)

    def put(self, bucket, name, stream, length=None):
        """Store `length` bytes (or all, up to EOF) of `stream` as the object, atomically:
        readers see the old object or the complete new one, never a partial one."""
        path = self.object_path(bucket, name)
        fd, tmp = self._mkstemp()
        try:
            hasher = meta.new_hasher()
            copy_stream(stream, fd, length, hasher, bucket, name)
            cksum = hasher.hexdigest() if hasher is not None else ""
            return self._publish(fd, tmp, bucket, name, path, cksum)
        except BaseException:
            _unlink_quietly(tmp)
            raise
        finally:
            os.close(fd)

    def _publish(self, fd, src, bucket, name, path, cksum):
        """fsync `src` (open as `fd`), stamp version and checksum, rename it to `path`."""
        if self.fsync:
            os.fsync(fd)
        bdir = self._bucket_dir(bucket)
        dirty = [os.path.dirname(path)]
        for _ in range(_PUBLISH_RETRIES):
            try:
                dirty = make_parents(bdir, bucket, name) or dirty
                self._stamp_and_rename(fd, src, path, cksum)
                break
            except FileNotFoundError:
                # a concurrent delete pruned a parent dir between mkdir and rename
                if not os.path.isdir(bdir):
                    raise BucketNotFound(bucket) from None
            except (IsADirectoryError, NotADirectoryError):
                raise Conflict(f"cannot store ais://{bucket}/{name}: "
                               f"the name collides with a directory of other objects",
                               bucket, name) from None
        else:
            raise Conflict(f"cannot store ais://{bucket}/{name}: "
                           f"its directory keeps disappearing", bucket, name)
        if self.fsync:
            if self._xattrs:
                os.fsync(fd)  # the xattrs set after the data fsync
            try:
                for d in dirty:
                    fsync_dir(d)
            except FileNotFoundError:
                pass  # the bucket was destroyed right after the rename, object and all
        return attrs_from_stat(os.fstat(fd), meta.read_meta(fd) if self._xattrs else
                               ("", "", ""), path, name, bucket)

    def _stamp_and_rename(self, fd, src, path, cksum):
        if not self._xattrs:
            os.rename(src, path)
            return
        # The version read-increment-rename must not interleave with another PUT of the
        # same object in any process: a short flock over a shared lock file serialises it.
        lock = os.open(self._version_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            old = meta.read_meta(path)[0]
            meta.write_meta(fd, int(old) + 1 if old.isdigit() else 1, meta.CKSUM_TYPE, cksum)
            os.rename(src, path)
        finally:
            os.close(lock)

    def delete(self, bucket, name):
        path = self.object_path(bucket, name)
        try:
            if st_.S_ISDIR(os.lstat(path).st_mode):
                raise ObjectNotFound(bucket, name)
            os.unlink(path)
        except OSError as e:
            if e.errno in _NOT_FOUND:
                raise ObjectNotFound(bucket, name) from None
            raise
        remaining = prune_empty_dirs(self._bucket_dir(bucket), name)
        if self.fsync:
            try:
                fsync_dir(remaining)
            except FileNotFoundError:
                pass  # removed meanwhile by a concurrent delete or bucket destroy

    # ---- append sessions ----------------------------------------------------------------

    def append(self, bucket, name, handle, stream, length=None):
        """Append to session `handle` ("" starts one from the current object content, as
        AIS does) and return the handle to pass to the next append or to `flush`."""
        return self._appends.append(bucket, name, handle, stream, length)

    def flush(self, bucket, name, handle):
        """Publish the session's content as the object (atomic, like PUT); ends the session."""
        return self._appends.flush(bucket, name, handle)

    # ---- listing -----------------------------------------------------------------------

    def list_objects(self, bucket, prefix="", page_size=0, token="", start_after="",
                     with_meta=False):
        """One page of objects: (entries, next_token), next_token "" on the last page.

        Entries are ObjectAttrs sorted by name; version and checksum are read only with
        `with_meta` (two xattr reads per entry). `token` is the previous page's
        next_token; names <= max(token, start_after) are skipped.
        """
        self.require_bucket(bucket)
        bdir = self._bucket_dir(bucket)
        limit = min(page_size, MAX_PAGE) if page_size > 0 else MAX_PAGE
        broot = None
        entries = []
        for name, is_link in walk_names(bdir, prefix or "", max(token or "", start_after or "")):
            path = f"{bdir}/{name}"
            try:
                st = os.stat(path)
            except OSError:
                continue  # deleted meanwhile, or a dangling link
            if is_link:
                broot = broot or os.path.realpath(bdir) + "/"
                if not (st_.S_ISREG(st.st_mode) and os.path.realpath(path).startswith(broot)):
                    continue
            if len(entries) == limit:
                return entries, entries[-1].name
            m = meta.read_meta(path) if with_meta and self._xattrs else ("", "", "")
            entries.append(attrs_from_stat(st, m, path, name, bucket))
        return entries, ""


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass

