"""The local read cache of remote objects (S3, HTTP origins), on the node's data dir.

Built on the archive layer's verified, size-bounded LRU file cache (archive.inflatecache): each
cached copy is one file named after the object's version, digest(provider, bucket, name, ETag,
size), written under a lock as a temp file and renamed when complete (a partial download is
never visible), with a CRC-32 per 256 KiB block checked the first time a process serves it.
Eviction is LRU within `max_bytes`, shared by every worker process.

A copy is never trusted to be current: the backend asks the remote store first (a HEAD, or a
GET conditional on the ETag the copy was made from) and uses the copy only when its version is
the remote's. To know which ETag to ask about, each object has a hint: a symlink
`<digest(provider, bucket, name)>.ref` whose target text is "<size> <etag>" (one readlink;
it is not a path). A wrong or stale hint costs one full GET, never wrong bytes: the copy it
leads to is still looked up by the digest of the version the remote store names.
"""
import hashlib
import os
import secrets

from ..archive.inflatecache import InflateCache

_REF = ".ref"


def _digest(*parts):
    return hashlib.blake2b("\0".join(parts).encode("utf-8", "surrogateescape"),
                           digest_size=32).digest()


class ObjectCache(InflateCache):
    suffix = ".object"
    what = "remote object cache"
    instead = "the object is fetched again"
    paused = "remote objects are read without caching them"
    claim_step = 1 << 20   # objects are small and many: claim little at a time

    _estimate = 0   # this process's idea of the bytes in the cache since its last scan
    _unscanned = 0  # bytes it claimed since

    def make_room(self, extra, own=0):
        """As InflateCache's, but without a scan of the directory (a stat per file: a lot
        with thousands of small objects) while this process's own claims since the last scan
        stay below a sixteenth of the budget and its estimate below 90 % of it. Other
        processes' additions are seen at the next scan: the budget may be exceeded by about
        that sixteenth per process meanwhile."""
        if own + extra > self.max_bytes:
            return False
        if (self.seen_total is not None and self._unscanned + extra < self.max_bytes >> 4
                and self._estimate + extra <= self.max_bytes * 0.9):
            self._estimate += extra
            self._unscanned += extra
            return True
        ok = super().make_room(extra, own)
        self._estimate, self._unscanned = self.seen_total or 0, 0
        return ok

    def version_digest(self, provider, bucket, name, etag, size):
        return _digest(provider, bucket, name, etag, str(size))

    def range_digest(self, provider, bucket, name, etag, offset, length):
        """Names the cached copy of bytes [offset, offset+length) of one object version (a
        member of a remote shard read with ranged GETs)."""
        return _digest("range", provider, bucket, name, etag, str(offset), str(length))

    def _ref_path(self, provider, bucket, name):
        return os.path.join(self.dir, _digest(provider, bucket, name).hex()[:40] + _REF)

    def hint(self, provider, bucket, name):
        """(size, etag) of the last version cached here, or None."""
        if not self.max_bytes:
            return None
        try:
            text = os.readlink(self._ref_path(provider, bucket, name))
        except OSError:
            return None
        size, _, etag = text.partition(" ")
        return (int(size), etag) if size.isdigit() and etag else None

    def set_hint(self, provider, bucket, name, size, etag):
        ref = self._ref_path(provider, bucket, name)
        tmp = f"{ref}.{secrets.token_hex(4)}"
        try:
            os.symlink(f"{size} {etag}", tmp)
            os.replace(tmp, ref)
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass

    def lookup(self, provider, bucket, name, etag, size):
        """The verified CacheEntry of exactly that version, or None."""
        digest = self.version_digest(provider, bucket, name, etag, size)
        entry = self.open(digest, size, f"{provider}://{bucket}/{name}")
        if entry is not None and entry.length != size:
            entry.close()
            return None
        return entry

    def drop(self, provider, bucket, name):
        """Remove the cached copy (the hinted version) and the hint of an object; the bytes
        freed, None when there was no copy."""
        found = self.hint(provider, bucket, name)
        freed = None
        if found is not None:
            path = self._path(self.version_digest(provider, bucket, name, found[1], found[0]))
            try:
                size = os.stat(path).st_size
                os.unlink(path)  # readers that have it open keep their copy
                freed = size
            except OSError:
                pass
        try:
            os.unlink(self._ref_path(provider, bucket, name))
        except OSError:
            pass
        return freed
