"""LocalStore: the `ais` backend, buckets and objects as directories and files under one data dir.

Layout (everything on one filesystem, so `rename` publishes atomically):

    <data_dir>/ais/<bucket>/<object name>   objects
    <data_dir>/.sys/tmp/                    in-flight PUTs
    <data_dir>/.sys/append/                 append sessions (AIS append/flush)
    <data_dir>/.sys/trash/                  destroyed buckets being removed
    <data_dir>/.sys/shard-index/            persisted shard indexes
    <data_dir>/.sys/inflate-cache/          decompressed copies of compressed shards
    <data_dir>/.sys/locks/                  cross-process locks
    <data_dir>/.sys/tombs/                  tombstones of deleted names (cluster nodes)

Temp files of PUTs cut by a crash are swept at start-up and again at most every
`RESWEEP_EVERY` seconds, on a later PUT: a node restarted within seconds of the crash (when
the leftovers were too young to tell from an upload just starting) reclaims them soon after
instead of at its next restart.

Several server worker processes share one data directory, so nothing is cached that
another process could change: bucket existence is one lstat per call. A bucket is a real
directory: a symlink in its place is not a bucket (it could lead anywhere).
"""
import os
import secrets
import shutil
import stat as st_
import time

from ..archive import InflateCache, ShardMemory, index_state, open_shard
from . import attrs as meta
from .append import AppendSessions
from .attrs import attrs_from_stat
from .backend import Backend
from .errors import BucketExists, BucketNotFound, InvalidName, ObjectNotFound
from .fsutil import copy_stream, fsync_dir, full_disk_is_507, own, prune_empty_dirs, sweep
from .listing import walk_names
from .local_read import OPEN_FLAGS, FdBudget, FileSource, LocalBatchReader, lookup_error
from .names import validate_bucket_name, validate_object_name
from .paging import page_limit
from .publish import Publisher
from .tombs import Tombs

STALE_AFTER = 3600.0  # seconds without modification before an append session is dropped
_SWEEP_UNOWNED_AFTER = 5.0  # temp files no live process owns are leftovers after this age
RESWEEP_EVERY = 60.0        # seconds between sweeps of the temp files after start-up
_XATTR_BUCKET = "user.getbatch.bucket"  # a cluster bucket's etcd create revision
_NAME_MAX = 255       # bytes per path component (ext4, xfs, btrfs)
_PATH_MAX = 3072      # bytes per name: leaves room for the data dir within PATH_MAX (4096)


class LocalStore(Backend):
    provider = "ais"

    def __init__(self, data_dir, *, fsync=True, stale_after=STALE_AFTER, inflate_cache=0,
                 shard_memory=None):
        """`inflate_cache`: bytes of disk the decompressed copies of compressed shards may
        take (0: none; members are then decompressed for every request). `shard_memory`:
        the ShardMemory its shards' parsed indexes are kept in (default: a new one)."""
        # realpath once: symlink confinement compares resolved paths against it
        self.data_dir = os.path.realpath(data_dir)
        self.fsync = fsync
        self.fds = FdBudget()   # object fds this store's batches may hold (local_read.py)
        self.shard_memory = ShardMemory() if shard_memory is None else shard_memory
        self.root = os.path.join(self.data_dir, "ais")
        sysdir = os.path.join(self.data_dir, ".sys")
        self._tmp = os.path.join(sysdir, "tmp")
        self._trash = os.path.join(sysdir, "trash")
        self._index_dir = os.path.join(sysdir, "shard-index")
        locks = os.path.join(sysdir, "locks")
        for d in (self.root, self._tmp, self._trash, self._index_dir, locks):
            os.makedirs(d, exist_ok=True)
        self.reclaimed = sweep(self._tmp, _SWEEP_UNOWNED_AFTER, locked=True)
        self._next_sweep = time.monotonic() + RESWEEP_EVERY
        self._publisher = Publisher(self.root, os.path.join(locks, "version"),
                                    fsync=fsync, xattrs=self._probe_xattrs())
        self._xattrs = self._publisher.xattrs
        self.tombs = Tombs(os.path.join(sysdir, "tombs"))
        self._appends = AppendSessions(self, self._publisher, os.path.join(sysdir, "append"))
        sweep(self._appends.dir, stale_after)
        sweep(self._trash, 0)
        self._inflate_cache = (InflateCache(os.path.join(sysdir, "inflate-cache"), inflate_cache)
                               if inflate_cache else None)

    @property
    def clock(self):
        """The stamps.Clock of a cluster node (None on a single node: nothing is stamped)."""
        return self._publisher.clock

    @clock.setter
    def clock(self, clock):
        self._publisher.clock = clock
        self._publisher.tombs = self.tombs

    def _probe_xattrs(self):
        fd, path = self._mkstemp()
        try:
            return meta.write_meta(fd, 0, "", "")
        finally:
            os.close(fd)
            os.unlink(path)

    def _mkstemp(self, dirpath=None):
        if time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + RESWEEP_EVERY
            self.reclaimed += sweep(self._tmp, _SWEEP_UNOWNED_AFTER, locked=True)
        path = os.path.join(dirpath or self._tmp, secrets.token_hex(16))
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        own(fd)
        return fd, path

    def scratch_fd(self):
        """An fd of a new, already unlinked temp file in the data dir (gone once closed)."""
        fd, path = self._mkstemp()
        os.unlink(path)
        return fd

    def _meta(self, target):
        return (meta.read_meta(target, self._publisher.clock is not None) if self._xattrs
                else meta.NO_META)

    # ---- buckets -------------------------------------------------------------------

    def _bucket_dir(self, bucket):
        return f"{self.root}/{bucket}"

    def has_bucket(self, name):
        try:
            validate_bucket_name(name)
            return st_.S_ISDIR(os.lstat(self._bucket_dir(name)).st_mode)
        except (InvalidName, OSError):
            return False

    def list_buckets(self):
        return sorted(e.name for e in os.scandir(self.root)
                      if e.is_dir(follow_symlinks=False) and self.has_bucket(e.name))

    def create_bucket(self, name):
        validate_bucket_name(name)
        try:
            os.mkdir(self._bucket_dir(name))
        except FileExistsError:
            raise BucketExists(name) from None
        if self.fsync:
            fsync_dir(self.root)

    def bucket_id(self, name):
        """What set_bucket_id recorded on the bucket's directory ("" if nothing)."""
        try:
            return os.getxattr(self._bucket_dir(name), _XATTR_BUCKET).decode("ascii", "replace")
        except OSError:
            return ""

    def set_bucket_id(self, name, ident):
        """Record which incarnation of a cluster bucket this directory holds (best effort)."""
        try:
            os.setxattr(self._bucket_dir(name), _XATTR_BUCKET, str(ident).encode("ascii"))
        except OSError:
            pass

    def destroy_bucket(self, name):
        """Rename the bucket away first (atomic: it is gone for every process at once),
        then delete its contents at leisure."""
        self.require_bucket(name)
        doomed = os.path.join(self._trash, f"{name}.{secrets.token_hex(8)}")
        try:
            os.rename(self._bucket_dir(name), doomed)
        except (FileNotFoundError, NotADirectoryError):
            raise BucketNotFound(name) from None
        if self.fsync:
            fsync_dir(self.root)
        shutil.rmtree(doomed, ignore_errors=True)
        self.tombs.drop_bucket(name)

    # ---- names and paths -------------------------------------------------------------

    def object_path(self, bucket, name):
        """Validated filesystem path of object `name`, confined to the bucket directory.

        Names are already free of `..` and absolute forms, so only symlinks can lead out.
        We lstat each component below the bucket dir and resolve with realpath only when
        one is a symlink: that costs one lstat per component in the common case, where
        realpath would lstat every component of the data dir too. O_NOFOLLOW/openat walks
        would be race-free, but the archive library and the listing need paths, and
        whoever can plant symlinks in the data dir can already rewrite any object: this
        guards against misplaced links, not against a racing local attacker.
        """
        validate_bucket_name(bucket)
        validate_object_name(name)
        encoded = name.encode("utf-8", "surrogateescape")
        if len(encoded) > _NAME_MAX:
            if len(encoded) > _PATH_MAX:
                raise InvalidName("object name", name, f"longer than {_PATH_MAX} bytes", bucket)
            if any(len(p) > _NAME_MAX for p in encoded.split(b"/")):
                raise InvalidName("object name", name,
                                  f"path component longer than {_NAME_MAX} bytes", bucket)
        bdir = self._bucket_dir(bucket)
        try:
            if not st_.S_ISDIR(os.lstat(bdir).st_mode):
                raise BucketNotFound(bucket)
        except FileNotFoundError:
            raise BucketNotFound(bucket) from None
        path = f"{bdir}/{name}"
        cur = bdir
        for part in name.split("/"):
            cur = f"{cur}/{part}"
            try:
                mode = os.lstat(cur).st_mode
            except OSError:
                break  # missing (or under a non-directory): nothing below can be a link
            if st_.S_ISLNK(mode):
                if not os.path.realpath(path).startswith(bdir + "/"):
                    raise InvalidName("object name", name,
                                      "resolves outside the bucket (symlink)", bucket)
                break
        return path

    # ---- objects -----------------------------------------------------------------------

    def _open_regular(self, bucket, name):
        """An fd of the regular-file object, and its stat; ObjectNotFound otherwise."""
        path = self.object_path(bucket, name)
        try:
            fd = os.open(path, OPEN_FLAGS | os.O_NONBLOCK)  # a FIFO must not block the open
        except OSError as e:
            raise lookup_error(e, bucket, name) from None
        try:
            st = os.fstat(fd)
            if not st_.S_ISREG(st.st_mode):
                raise ObjectNotFound(bucket, name)
        except BaseException:
            os.close(fd)
            raise
        return fd, st

    def stat(self, bucket, name):
        fd, st = self._open_regular(bucket, name)
        try:
            return attrs_from_stat(st, self._meta(fd), name, bucket)
        finally:
            os.close(fd)

    def open(self, bucket, name):
        """(FileSource, attrs): the attributes are those of the very version opened."""
        fd, st = self._open_regular(bucket, name)
        try:
            os.set_blocking(fd, True)
            attrs = attrs_from_stat(st, self._meta(fd), name, bucket)
        except BaseException:
            os.close(fd)
            raise
        return FileSource(fd, st.st_size), attrs

    def put(self, bucket, name, stream, length=None, stamp=None):
        """`stamp`: a replica's (cluster nodes), stored only when newer than the name's
        current version (None is returned otherwise)."""
        path = self.object_path(bucket, name)
        fd, tmp = self._mkstemp()
        try:
            with full_disk_is_507(bucket, name):
                hasher = meta.new_hasher()
                copy_stream(stream, fd, length, hasher, bucket, name)
                cksum = hasher.hexdigest() if hasher is not None else ""
                return self._publisher.publish(fd, tmp, bucket, name, path, cksum, stamp)
        except BaseException:
            _unlink_quietly(tmp)
            raise
        finally:
            os.close(fd)

    def delete(self, bucket, name, stamp=None, keep=False):
        """Remove the object; ObjectNotFound if it is not here. On a cluster node the delete
        is a version too: stamped here (or carrying `stamp`), it leaves a tombstone where
        the object was (or anyway, with `keep`) and removes only an older object; it
        returns (the delete's stamp, whether the object was here)."""
        path = self.object_path(bucket, name)
        if self._publisher.clock is None:
            self._unlink(bucket, name, path)
            return None
        with self._publisher.locked():
            have, tomb = self._publisher.current_stamp(bucket, name, path)
            if stamp is None:
                stamp = self.clock.now(after=max(have, tomb))
            else:
                self.clock.observe(stamp)
            try:
                exists = st_.S_ISREG(os.lstat(path).st_mode)
            except OSError:
                exists = False
            if not (exists or keep):
                raise ObjectNotFound(bucket, name)
            if stamp > max(have, tomb):   # the delete is the newest version
                self.tombs.put(bucket, name, stamp)
                if exists:
                    self._unlink(bucket, name, path)
        return stamp, exists

    def current_stamp(self, bucket, name):
        """The stamp of the newest version of the name here (its object's or its
        tombstone's; "" for an object without one), None when there is neither."""
        path = self.object_path(bucket, name)
        tomb = self.tombs.get(bucket, name)
        try:
            exists = st_.S_ISREG(os.lstat(path).st_mode)
        except OSError:
            exists = False
        if not exists:
            return tomb or None
        return max(meta.read_stamp(path), tomb)

    def drop_copy(self, bucket, name, stamp):
        """Remove this node's copy if it is still the version stamped `stamp`, leaving no
        tombstone (rebalance: the owners hold that version or a newer one). True if removed."""
        path = self.object_path(bucket, name)
        with self._publisher.locked():
            if meta.read_stamp(path) != stamp:
                return False
            try:
                self._unlink(bucket, name, path)
            except ObjectNotFound:
                return False
        return True

    def _unlink(self, bucket, name, path):
        try:
            if st_.S_ISDIR(os.lstat(path).st_mode):
                raise ObjectNotFound(bucket, name)
            os.unlink(path)
        except OSError as e:
            raise lookup_error(e, bucket, name) from None
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
        with full_disk_is_507(bucket, name):
            return self._appends.append(bucket, name, handle, stream, length)

    def flush(self, bucket, name, handle):
        with full_disk_is_507(bucket, name):
            return self._appends.flush(bucket, name, handle)

    # ---- listing -----------------------------------------------------------------------

    def list_objects(self, bucket, prefix="", page_size=0, token="", start_after="",
                     with_meta=False):
        """Version and checksum are read only `with_meta` (two xattr reads per entry)."""
        self.require_bucket(bucket)
        bdir = self._bucket_dir(bucket)
        limit = page_limit(page_size)
        broot = bdir + "/"
        entries = []
        for name, is_link in walk_names(bdir, prefix or "", max(token or "", start_after or "")):
            path = f"{bdir}/{name}"
            try:
                st = os.stat(path)
            except OSError:
                continue  # deleted meanwhile, or a dangling link
            if is_link and not (st_.S_ISREG(st.st_mode) and
                                os.path.realpath(path).startswith(broot)):
                continue
            if len(entries) == limit:
                return entries, entries[-1].name
            m = self._meta(path) if with_meta else meta.NO_META
            entries.append(attrs_from_stat(st, m, name, bucket))
        return entries, ""

    # ---- shards and batches ----------------------------------------------------------------

    def open_shard(self, bucket, name, budget=None):
        """The shard is read through the fd opened here, and its indexes are those of that
        very version (the fd's identity plus the object's version counter)."""
        fd, _ = self._open_regular(bucket, name)
        try:
            os.set_blocking(fd, True)
            version = self._meta(fd)[0]
        except BaseException:
            os.close(fd)
            raise
        return open_shard(fd, name=name, version=version, index_dir=self._index_dir,
                          budget=budget, cache=self._inflate_cache, memory=self.shard_memory)

    def shard_index_state(self, bucket, name):
        fd, st = self._open_regular(bucket, name)
        try:
            os.set_blocking(fd, True)
            state, members = index_state(fd, name=name, version=self._meta(fd)[0],
                                         index_dir=self._index_dir, memory=self.shard_memory)
        finally:
            os.close(fd)
        return state, members, st.st_size

    def batch_reader(self, n_entries, budget=None):
        return LocalBatchReader(self, n_entries, budget)


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
