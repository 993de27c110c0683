"""Atomic publication of a finished temp file as an object version of the local store.

Shared by PUT and by the flush of an append session: fsync the data, stamp the next version
number and the checksum as xattrs, rename the file over the object's path (creating parent
directories, but never a bucket that was destroyed meanwhile), then fsync the directories
whose entries changed. Readers see the old version or the complete new one, never a part.

On a cluster (`clock` set) the publisher also stamps (stamps.py): a write accepted here gets
a new stamp newer than the name's current one (its object's or its tombstone's), and a
replica carrying its stamp replaces only an older version: newest stamp wins, whatever order
copies arrive in. Reading the current stamp and renaming happen under the same lock.
"""
import fcntl
import os
from contextlib import contextmanager

from . import attrs as meta
from .errors import BucketNotFound, Conflict, Unavailable
from .fsutil import fsync_dir, make_parents

_RETRIES = 5


class Publisher:
    def __init__(self, root, lock_path, *, fsync, xattrs):
        self.root = root  # the directory holding the bucket directories
        self.fsync = fsync
        self.xattrs = xattrs
        self._version_lock = lock_path
        self.clock = None  # a stamps.Clock on a cluster node
        self.tombs = None  # the store's tombs.Tombs then

    @contextmanager
    def locked(self):
        """The lock every version change of every object is made under (all processes)."""
        lock = os.open(self._version_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
        finally:
            os.close(lock)

    def current_stamp(self, bucket, name, path):
        """(stamp of the object here, stamp of its tombstone here): "" where there is none."""
        return meta.read_stamp(path), self.tombs.get(bucket, name)

    def publish(self, fd, src, bucket, name, path, cksum, stamp=None):
        """Publish temp file `src` (open as `fd`) as object `name` of `bucket`, at `path`
        (the object's validated path); returns its ObjectAttrs. With `stamp` (a replica),
        only when it is newer than the name's current version: otherwise `src` is
        dropped and None returned."""
        bdir = f"{self.root}/{bucket}"
        if self.fsync:
            os.fsync(fd)
        dirty = [os.path.dirname(path)]
        for _ in range(_RETRIES):
            try:
                dirty = make_parents(bdir, bucket, name) or dirty
                if not self._stamp_and_rename(fd, src, bucket, name, path, cksum, stamp):
                    os.unlink(src)
                    return None
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
            # deletes of its neighbours keep pruning its directory: a race that passes, not
            # a name that collides (409)
            raise Unavailable(f"cannot store ais://{bucket}/{name}: concurrent deletes kept "
                              f"removing its directory ({_RETRIES} tries); try again")
        if self.fsync:
            if self.xattrs:
                os.fsync(fd)  # the xattrs set after the data fsync
            try:
                for d in dirty:
                    fsync_dir(d)
            except FileNotFoundError:
                pass  # the bucket was destroyed right after the rename, object and all
        return meta.attrs_from_stat(os.fstat(fd), meta.read_meta(fd, self.clock is not None)
                                    if self.xattrs else meta.NO_META, name, bucket)

    def _stamp_and_rename(self, fd, src, bucket, name, path, cksum, stamp):
        """False when a replica (`stamp`) is not newer than what is here."""
        if not self.xattrs:
            os.rename(src, path)
            return True
        # The version read-increment-rename must not interleave with another PUT of the
        # same object in any process: a short flock over a shared lock file serialises it.
        with self.locked():
            old = meta.read_meta(path)[0]
            tomb = ""
            if self.clock is not None:
                have, tomb = self.current_stamp(bucket, name, path)
                current = max(have, tomb)
                if stamp is None:
                    stamp = self.clock.now(after=current)
                else:
                    self.clock.observe(stamp)
                    if stamp <= current:
                        return False
            meta.write_meta(fd, int(old) + 1 if old.isdigit() else 1, meta.CKSUM_TYPE, cksum,
                            stamp or "")
            os.rename(src, path)
            if tomb:
                self.tombs.drop(bucket, name)
        return True
