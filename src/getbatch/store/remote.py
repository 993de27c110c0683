"""RemoteStore: a Backend over a remote object store (S3, an HTTP origin), read through a local cache.

The remote side is a small client (s3.py, http.py): head, get (ranged, conditional), put,
delete, list. This module adds what makes it a getbatch backend:

- Whole-object reads go through the verified cache (objcache.py). Every use asks the remote
  store first: a GET conditional on the cached copy's ETag (304: the copy is current), or a HEAD;
  a changed object is fetched again, a deleted one is a 404. When the remote sends an MD5 ETag
  (single-part S3 uploads), the download is checked against it. A copy that cannot be cached
  (bigger than the cache, another process writing it) goes to a private unnamed file.
- Ranges (object GET with Range, GetBatch entries with start/length) are ranged GETs of just
  those bytes, pinned to one version with If-Match.
- Shards: a cached copy is opened like a local shard; otherwise plain .tar and .zip shards are
  read through ranged GETs (archive/ranged.py: the index, then only the wanted members), and
  compressed ones (.tgz, .tar.lz4) are fetched whole once into the cache.
- GetBatch: `RemoteBatchReader.prepare` starts every object and shard a request names on a
  per-process pool (at most `inflight` at once), so they download concurrently while planning
  waits for each in request order; each is fetched once per request however often it is named.
- PUT writes through: the body is spooled to a local file (its MD5 sent as Content-MD5), sent
  to the remote store, and only once that accepted it answered 200 and cached.
"""
import hashlib
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..archive import InflateCache, ShardMemory, detect_format, open_shard
from ..archive.inflatecache import Stale
from ..archive.ranged import Mirror, RangedTarShard, RangedZipShard, anonymous_file
from .attrs import ObjectAttrs
from .backend import Backend, BatchReader
from .errors import (BucketExists, NotSupported, ObjectNotFound, RemoteBadAnswer, RemoteChanged,
                     RemoteUnavailable, StoreError)
from .fsutil import copy_stream, write_all
from .local_read import FileSource
from .names import validate_bucket_name, validate_object_name
from .objcache import ObjectCache

log = logging.getLogger("getbatch.remote")

_CHUNK = 1 << 20
_COMPRESSED = (".tgz", ".tar.gz", ".tar.lz4")
_LIST_MIN = 32  # objects of one bucket in a batch from which a listing validates them


@dataclass(frozen=True)
class Meta:
    """What a remote store says about one object version."""
    name: str
    size: int
    etag: str
    mtime_ns: int = 0


class NotModified(Exception):
    """A conditional GET found the object unchanged (304)."""


def _is_md5(etag):
    e = etag.strip('"')
    return len(e) == 32 and all(c in "0123456789abcdef" for c in e)


def _attrs(meta, bucket):
    etag = meta.etag.strip('"')
    md5 = _is_md5(meta.etag)
    return ObjectAttrs(meta.size, meta.mtime_ns, meta.mtime_ns, etag if etag.isascii() else "",
                       "md5" if md5 else "", etag if md5 else "", meta.name, bucket)


class CachedSource(FileSource):
    """A local copy (cache entry or private file) of one remote object version. A cache file
    holds its trailer after the object's `size` bytes: every read stops at `size`."""

    def pread(self, length, offset):
        return os.pread(self.fd, max(0, min(length, self.size - offset)), offset)

    def read(self, n=-1):
        left = self.size - os.lseek(self.fd, 0, os.SEEK_CUR)
        return os.read(self.fd, max(0, left if n is None or n < 0 else min(n, left)))


def _pool(workers, name):
    """A per-process thread pool, made on first use (pools made before a fork do not work)."""
    holder = {}
    lock = threading.Lock()

    def get():
        with lock:
            made = holder.get("pool")
            if made is None or made[0] != os.getpid():
                made = holder["pool"] = (os.getpid(), ThreadPoolExecutor(workers, name))
            return made[1]
    return get


class RemoteStore(Backend):
    whole_below = 32 << 20  # shards up to this size are fetched (and cached) whole

    def __init__(self, client, data_dir, *, cache_bytes, inflate_cache=0, inflight=16,
                 shard_memory=None):
        """`shard_memory`: the ShardMemory its shards' parsed indexes are kept in (default: a
        new one)."""
        self.client = client
        self.shard_memory = ShardMemory() if shard_memory is None else shard_memory
        self.provider = client.provider
        sysdir = os.path.join(os.path.realpath(data_dir), ".sys")
        self._tmp = os.path.join(sysdir, "remote-tmp")
        self._index_dir = os.path.join(sysdir, "shard-index")
        for d in (self._tmp, self._index_dir):
            os.makedirs(d, exist_ok=True)
        self.cache = ObjectCache(os.path.join(sysdir, "remote-cache", self.provider), cache_bytes)
        self._inflate = (InflateCache(os.path.join(sysdir, "inflate-cache"), inflate_cache)
                         if inflate_cache else None)
        self.inflight = inflight
        self._tls = threading.local()  # fetched: bytes downloaded (prefetch reports them)
        self._objects_pool = _pool(inflight, f"{self.provider}-get")
        self._ranges_pool = _pool(inflight, f"{self.provider}-range")

    def _ref(self, bucket, name):
        return f"{self.provider}://{bucket}/{name}"

    # ---- buckets: they exist when the remote store has them; nothing to create here

    def list_buckets(self):
        return self.client.list_buckets()

    def has_bucket(self, name):
        try:
            validate_bucket_name(name)
        except StoreError:
            return False
        return self.client.has_bucket(name)

    def create_bucket(self, name):
        validate_bucket_name(name)
        if self.client.has_bucket(name):
            raise BucketExists(name, self.provider)
        self.client.create_bucket(name)

    def destroy_bucket(self, name):
        self.require_bucket(name)
        raise NotSupported(f"{self.provider}://{name} is a remote bucket: getbatch does not "
                           "destroy it (evict its cached objects instead)")

    def bucket_props(self, name):
        self.require_bucket(name)
        return {"provider": self.provider, "backend_bck": {"name": "", "provider": ""}}

    # ---- objects

    def _check(self, bucket, name):
        validate_bucket_name(bucket)
        validate_object_name(name)

    def stat(self, bucket, name):
        self._check(bucket, name)
        return _attrs(self.client.head(bucket, name), bucket)

    def open(self, bucket, name):
        """The cached copy of the current version when there is one, else a source that
        fetches on first read: the whole object (and caches it) or just the range read."""
        self._check(bucket, name)
        meta = self.client.head(bucket, name)
        src = self._cached(bucket, name, meta)
        if src is not None:
            return src, _attrs(meta, bucket)
        return _LazyRemoteSource(self, bucket, name, meta), _attrs(meta, bucket)

    def _cached(self, bucket, name, meta):
        """A Source of the cached copy of version `meta`, or None."""
        entry = self.cache.lookup(self.provider, bucket, name, meta.etag, meta.size)
        return None if entry is None else self._from_entry(entry)

    def _from_entry(self, entry):
        """A Source of a cache entry once every block is verified (before its fd is used
        zero-copy); None when it is damaged (it has been discarded, and logged)."""
        try:
            entry.verify(0, entry.length)
            return CachedSource(os.dup(entry.fd), entry.length)
        except Stale:
            return None
        finally:
            entry.close()

    def local_copy(self, bucket, name, known=None, pin=None):
        """A Source of a verified local copy of the current version: the cached one when the
        remote store confirms it (one conditional GET, or `known`: the Meta a listing just
        gave), else downloaded now. With `pin` (the Meta whose labels the caller already
        answered with), a copy of exactly that version or RemoteChanged."""
        self._check(bucket, name)
        if known is not None or pin is not None:
            src = self._cached(bucket, name, pin or known)
            if src is not None:
                return src
        if pin is not None:
            meta, body = self.client.get(bucket, name, if_match=pin.etag)
            try:
                if meta.size != pin.size:
                    raise RemoteChanged(self.provider, bucket, name)
                return self._download(bucket, name, meta, body)
            finally:
                body.close()
        hint = self.cache.hint(self.provider, bucket, name)
        entry = None
        if hint is not None:
            entry = self.cache.lookup(self.provider, bucket, name, hint[1], hint[0])
        body = None
        if entry is not None:
            try:
                meta, body = self.client.get(bucket, name, if_none_match=hint[1])
            except NotModified:
                src = self._from_entry(entry)
                if src is not None:
                    return src
            except BaseException:
                entry.close()
                raise
            else:
                entry.close()
        if body is None:
            meta, body = self.client.get(bucket, name)
        try:
            src = self._cached(bucket, name, meta)  # another process fetched it meanwhile?
            if src is not None:
                return src
            return self._download(bucket, name, meta, body)
        finally:
            body.close()

    def _download(self, bucket, name, meta, body):
        """Read `body` (the whole object `meta`) into the cache, or a private file if it
        cannot be cached; its MD5 checked when the ETag is one."""
        md5 = hashlib.md5() if _is_md5(meta.etag) else None
        self._tls.fetched = getattr(self._tls, "fetched", 0) + meta.size
        fill = None
        if meta.size <= self.cache.max_bytes:
            fill = self.cache.fill(self.cache.version_digest(
                self.provider, bucket, name, meta.etag, meta.size), self._ref(bucket, name))
        fd = -1 if fill is not None else anonymous_file(self._tmp)
        try:
            got = 0
            while got < meta.size:
                chunk = body.read(min(_CHUNK, meta.size - got))
                if not chunk:
                    break
                got += len(chunk)
                if md5 is not None:
                    md5.update(chunk)
                if fill is not None:
                    if not fill.write(chunk):  # no room after all: start over, privately
                        fill = None
                        _, again = self.client.get(bucket, name, if_match=meta.etag)
                        try:
                            return self._private(bucket, name, meta, again)
                        finally:
                            again.close()
                else:
                    write_all(fd, chunk)
            if got != meta.size:
                raise self._short(bucket, name, got, meta.size)
            if md5 is not None and md5.hexdigest() != meta.etag.strip('"'):
                raise self._bad_md5(bucket, name)
            if fill is not None:
                entry = fill.commit()
                fill = None
                if entry is not None:
                    self.cache.set_hint(self.provider, bucket, name, meta.size, meta.etag)
                    return self._from_entry(entry)
                _, again = self.client.get(bucket, name, if_match=meta.etag)
                try:
                    return self._private(bucket, name, meta, again)
                finally:
                    again.close()
            src, fd = CachedSource(fd, meta.size), -1
            return src
        finally:
            if fill is not None:
                fill.abort()
            if fd >= 0:
                os.close(fd)

    def _short(self, bucket, name, got, size):
        return RemoteBadAnswer(self.provider, self.client.where(bucket),
                               f"the body of {self._ref(bucket, name)} ended after {got} of "
                               f"{size} bytes; nothing was kept", bucket, name)

    def _bad_md5(self, bucket, name):
        return RemoteUnavailable(self.provider, self.client.where(bucket),
                                 f"the bytes of {self._ref(bucket, name)} do not match its MD5 "
                                 "ETag; nothing was kept", bucket, name)

    def _private(self, bucket, name, meta, body):
        fd = anonymous_file(self._tmp)
        try:
            md5 = hashlib.md5() if _is_md5(meta.etag) else None
            copy_stream(body, fd, meta.size, md5, bucket, name)
            if md5 is not None and md5.hexdigest() != meta.etag.strip('"'):
                raise self._bad_md5(bucket, name)
            return CachedSource(fd, meta.size)
        except BaseException:
            os.close(fd)
            raise

    def list_versions(self, bucket, names):
        """{name: Meta} of those of `names` that exist, from listing the key range they span
        (one request per 1,000 keys): validating many cached objects costs a few listings
        instead of a request each. Names past what a bounded listing reached are left out."""
        lo, hi = min(names), max(names)
        budget = 2 * len(names) + 1000  # keys we are willing to read past
        found, token, start = {}, "", lo[:-1]
        wanted = set(names)
        while budget > 0:
            metas, token = self.client.list(bucket, os.path.commonprefix([lo, hi]), 1000, token,
                                            "" if token else start)
            budget -= len(metas)
            for m in metas:
                if m.name in wanted:
                    found[m.name] = m
            if not token or not metas or metas[-1].name >= hi:
                break
        return found

    def fetch_range(self, bucket, name, etag, offset, length):
        """Bytes [offset, offset+length) of version `etag` (RemoteChanged if replaced)."""
        meta, body = self.client.get(bucket, name, offset, length, if_match=etag)
        try:
            data = body.read(length)
        finally:
            body.close()
        if len(data) != length:
            raise self._short(bucket, name, len(data), length)
        return data

    def put(self, bucket, name, stream, length=None):
        """Spool, send with Content-MD5, then cache: 200 only once the remote store has it."""
        self._check(bucket, name)
        fd = anonymous_file(self._tmp)
        try:
            md5 = hashlib.md5()
            size = copy_stream(stream, fd, length, md5, bucket, name)
            with os.fdopen(os.dup(fd), "rb") as f:
                f.seek(0)  # the dup shares the offset the spooling left at the end
                etag = self.client.put(bucket, name, f, size, md5.digest())
            meta = Meta(name, size, etag)
            self._cache_file(bucket, name, meta, fd)
        finally:
            os.close(fd)
        return ObjectAttrs(size, 0, 0, etag.strip('"'), "md5" if _is_md5(etag) else "",
                           etag.strip('"') if _is_md5(etag) else "", name, bucket)

    def _cache_file(self, bucket, name, meta, fd):
        """Cache the local file `fd` as version `meta` (best effort)."""
        if meta.size > self.cache.max_bytes:
            return
        fill = self.cache.fill(self.cache.version_digest(
            self.provider, bucket, name, meta.etag, meta.size), self._ref(bucket, name))
        if fill is None:
            return
        try:
            off = 0
            while off < meta.size:
                chunk = os.pread(fd, min(_CHUNK, meta.size - off), off)
                if not chunk or not fill.write(chunk):
                    return
                off += len(chunk)
            entry = fill.commit()
            if entry is not None:
                entry.close()
                self.cache.set_hint(self.provider, bucket, name, meta.size, meta.etag)
        finally:
            fill.abort()

    def append(self, bucket, name, handle, stream, length=None):
        raise NotSupported(f"append is not supported on {self.provider}:// buckets (the remote "
                           "store has no appends): PUT the whole object")

    def flush(self, bucket, name, handle):
        self.append(bucket, name, handle, None)

    def delete(self, bucket, name):
        self._check(bucket, name)
        self.client.delete(bucket, name)
        self.cache.drop(self.provider, bucket, name)

    def list_objects(self, bucket, prefix="", page_size=0, token="", start_after="",
                     with_meta=False):
        validate_bucket_name(bucket)
        metas, nxt = self.client.list(bucket, prefix, page_size, token, start_after)
        return [_attrs(m, bucket) for m in metas], nxt

    # ---- cache control (the SDK's prefetch / evict jobs)

    def prefetch(self, bucket, name):
        """Make sure the current version is in the cache; the bytes that took fetching."""
        self._tls.fetched = 0
        self.local_copy(bucket, name).close()
        return self._tls.fetched

    def evict(self, bucket, name):
        """Drop the cached copy, the remote object stays; the bytes freed. ObjectNotFound
        when nothing of it is cached."""
        self._check(bucket, name)
        self.require_bucket(bucket)
        freed = self.cache.drop(self.provider, bucket, name)
        if freed is None:
            raise ObjectNotFound(bucket, name, self.provider)
        return freed

    # ---- shards and batches

    def open_shard(self, bucket, name, budget=None):
        self._check(bucket, name)
        meta = self.client.head(bucket, name)
        return self._open_shard(bucket, name, meta, budget)

    def _open_shard(self, bucket, name, meta, budget):
        src = self._cached(bucket, name, meta)
        if src is None and (meta.size <= self.whole_below or name.lower().endswith(_COMPRESSED)):
            # compressed: ranged reads cannot help; small: one GET costs less than several
            src = self.local_copy(bucket, name, pin=meta)   # the version the index is keyed by
        if src is not None:
            return self._local_shard(bucket, name, meta, src, budget)
        mirror = Mirror(lambda off, n: self.fetch_range(bucket, name, meta.etag, off, n),
                        meta.size, self._tmp, name, parallel=self._ranges_pool().map,
                        **self._range_cache(bucket, name, meta.etag))
        try:
            fmt = detect_format(mirror.pread(min(512, meta.size), 0), name=name)
            kw = dict(name=name, version=f"{self._ref(bucket, name)}#{meta.etag}",
                      index_dir=self._index_dir, key=self._ref(bucket, name),
                      memory=self.shard_memory)
            if fmt == "tar":
                shard = RangedTarShard(mirror, **kw)
            elif fmt == "zip":
                shard = RangedZipShard(mirror, **kw)
            else:  # compressed: fetched whole, once, then read like a local one
                mirror.close()
                return self._local_shard(bucket, name, meta,
                                         self.local_copy(bucket, name, pin=meta),
                                         budget)
        except BaseException:
            mirror.close()
            raise
        shard.budget = budget
        shard.cache = self._inflate
        return shard

    def _range_cache(self, bucket, name, etag):
        """recall/remember functions keeping members of a ranged shard in the cache."""
        cache, ref = self.cache, self._ref(bucket, name)

        def digest(off, n):
            return cache.range_digest(self.provider, bucket, name, etag, off, n)

        def recall(off, n):
            entry = cache.open(digest(off, n), n, ref)
            if entry is None:
                return None
            try:
                return entry.read(0, n) if entry.length == n else None
            except Stale:
                return None
            finally:
                entry.close()

        def remember(off, data):
            if len(data) > cache.max_bytes:
                return
            fill = cache.fill(digest(off, len(data)), ref)
            if fill is None:
                return
            try:
                if fill.write(data):
                    entry = fill.commit()
                    if entry is not None:
                        entry.close()
            finally:
                fill.abort()
        return {"recall": recall, "remember": remember} if cache.max_bytes else {}

    def _local_shard(self, bucket, name, meta, src, budget):
        fd = os.dup(src.fileno())
        src.close()
        return open_shard(fd, name=name, version=meta.etag, index_dir=self._index_dir,
                          budget=budget, cache=self._inflate, length=src.size,
                          memory=self.shard_memory)

    def batch_reader(self, n_entries, budget=None):
        return RemoteBatchReader(self, budget)


class _LazyRemoteSource:
    """An uncached remote object version for the object API: reading all of it fetches it
    into the cache; reading a part is a ranged GET of that part (If-Match: this version)."""

    lazy = True

    def __init__(self, store, bucket, name, meta):
        self.store = store
        self.bucket = bucket
        self.name = name
        self.meta = meta
        self.size = meta.size
        self._copy = None

    def fileno(self):
        return None

    def pread(self, length, offset):
        length = max(0, min(length, self.size - offset))
        return b"".join(self.chunks(offset, length))

    def chunks(self, offset, length):
        """The bytes, from a copy of exactly the version this source was opened as (the
        request is made now, so a changed or lying remote fails before a status line)."""
        if self._copy is None and (offset, length) == (0, self.size):
            self._copy = self.store.local_copy(self.bucket, self.name, pin=self.meta)
        if self._copy is not None:
            return self._copy.chunks(offset, length)
        _, body = self.store.client.get(self.bucket, self.name, offset, length,
                                        if_match=self.meta.etag)
        return self._stream(body, length)

    def _stream(self, body, length):
        want = length
        try:
            while length > 0:
                data = body.read(min(_CHUNK, length))
                if not data:
                    raise self.store._short(self.bucket, self.name, want - length, want)
                length -= len(data)
                yield data
        finally:
            body.close()

    def close(self):
        if self._copy is not None:
            self._copy.close()
            self._copy = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RemoteBatchReader(BatchReader):
    """One GetBatch request's reads of a RemoteStore: every object and shard it names is
    fetched once, concurrently, starting before planning asks for the first one."""

    def __init__(self, store, budget=None):
        super().__init__(store, budget)
        self._objects = {}   # (bucket, name) -> Future of a local copy Source
        self._pending = {}   # (bucket, name) -> Future of a Shard

    def prepare(self, entries):
        whole, ranges, shards = set(), {}, {}
        for e in entries:
            key = (e.bucket, e.objname)
            if e.archpath:
                shards.setdefault(key, []).append(e.archpath)
            elif e.start or e.length:
                ranges.setdefault(key, []).append((e.start, e.length))
            else:
                whole.add(key)
        pool = self.backend._objects_pool()
        known = self._listed(whole)
        for key in whole:
            self._objects[key] = pool.submit(self.backend.local_copy, *key, known.get(key))
        for key, spans in ranges.items():
            if key not in whole:
                self._objects[key] = pool.submit(self._ranged_copy, key, spans)
        for key, names in shards.items():
            self._pending[key] = pool.submit(self._prefetched_shard, key, names)

    def _listed(self, keys):
        """{(bucket, name): Meta} from listings, for buckets with many objects in the batch
        (then one listing validates up to 1,000 cached copies); {} when listing fails."""
        by_bucket = {}
        for b, n in keys:
            by_bucket.setdefault(b, []).append(n)
        out = {}
        for b, names in by_bucket.items():
            if len(names) < _LIST_MIN:
                continue
            try:
                out.update(((b, n), m) for n, m in self.backend.list_versions(b, names).items())
            except StoreError:
                pass  # e.g. an HTTP origin cannot list: each object is validated on its own
        return out

    def _ranged_copy(self, key, spans):
        """A sparse local copy holding the bytes the entries' ranges need (one ranged GET of
        their covering span), or the cached copy when the cache has the current version."""
        store = self.backend
        bucket, name = key
        meta = store.client.head(bucket, name)
        src = store._cached(bucket, name, meta)
        if src is not None:
            return src
        lo = min(s for s, _ in spans)
        hi = max(meta.size if n == -1 else s + n for s, n in spans)
        lo, hi = min(lo, meta.size), min(hi, meta.size)
        mirror = Mirror(lambda off, n: store.fetch_range(bucket, name, meta.etag, off, n),
                        meta.size, store._tmp, name)
        try:
            mirror.ensure(lo, hi - lo)
            return CachedSource(os.dup(mirror.fd), meta.size)
        finally:
            mirror.close()

    def _prefetched_shard(self, key, names):
        shard = self.backend.open_shard(*key, budget=self.budget)
        prefetch = getattr(shard, "prefetch", None)
        if prefetch is not None:
            found = []
            for n in names:
                try:
                    shard.lookup(n)
                    found.append(n)
                except Exception:
                    pass  # planning reports it, in request order
            prefetch(found)
        return shard

    def source(self, bucket, name):
        fut = self._objects.get((bucket, name))
        src = fut.result() if fut is not None else self.backend.local_copy(bucket, name)
        if fut is None:
            return src
        # the same object named again: each item owns its own fd of the one copy
        return CachedSource(os.dup(src.fileno()), src.size)

    def shard(self, bucket, name):
        key = (bucket, name)
        shard = self._shards.get(key)
        if shard is None:
            fut = self._pending.pop(key, None)
            shard = fut.result() if fut is not None else self.backend.open_shard(
                bucket, name, self.budget)
            self._shards[key] = shard
        return shard

    def close(self):
        for futs in (self._objects, self._pending):
            for fut in futs.values():
                fut.cancel()
            for fut in futs.values():
                if not fut.cancelled():
                    try:
                        fut.result().close()
                    except BaseException:
                        pass
            futs.clear()
        super().close()
