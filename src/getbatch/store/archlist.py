"""Listings with shards expanded (the SDK's `ARCH_DIR` flag), over any backend.

Each object with a shard extension (.tar, .tgz, .tar.gz, .tar.lz4, .zip) is followed by
its regular files as `<shard>/<file>` entries with their sizes, sorted by name (`./x` and
`/x` listed as `x`, duplicates once: the names GET and GetBatch find them by), as
`ais archive ls` shows them. A prefix may reach into a shard (`s.tar/sub/`).

A page may end inside a shard. Its continuation token is then `<shard>NUL<last file
listed>` (NUL is in no object name), and the next page resumes inside that shard, then goes
on with the objects after it; otherwise the token is the last object name. The backend is
driven by `start_after` only, so this works with any backend's own paging.
"""
import logging

from ..archive import FILE, ArchiveError, InflateBudget
from ..archive.formats import format_from_name
from .archived import archive_splits
from .attrs import ObjectAttrs
from .errors import ObjectNotFound
from .paging import page_limit

ARCH_DIR = 1 << 3     # the LsoMsg flag asking for this listing
# LsoEntry flags of AIS (api/apc/lsmsg.go)
IN_ARCHIVE = 1 << 7   # the entry is a file inside a shard
IS_ARCHIVE = 1 << 9   # the entry is a shard that was listed as a directory

SEP = "\0"
log = logging.getLogger("getbatch.store")


def list_expanded(backend, bucket, prefix="", page_size=0, token="", start_after="",
                  with_meta=False, max_inflate=0):
    """One page: ([(ObjectAttrs, flags)], next_token); next_token "" on the last page.
    `max_inflate`: bytes indexing one compressed shard may decompress (0: no limit)."""
    page = _Page(backend, bucket, prefix, page_size, with_meta, max_inflate)
    after = max(token, start_after)
    if SEP in token:
        shard, member = token.split(SEP, 1)
        nxt = page.members(page.shard_attrs(shard), member)
        if nxt is not None:
            return page.out, nxt
        after = shard
    elif not after:
        for shard, _ in archive_splits(prefix, empty_rest=True):
            attrs = page.shard_attrs(shard)
            if attrs is not None:
                nxt = page.members(attrs, "")
                if nxt is not None:
                    return page.out, nxt
                after = shard
                break
    return page.objects(after)


class _Page:
    def __init__(self, backend, bucket, prefix, page_size, with_meta, max_inflate):
        self.backend = backend
        self.bucket = bucket
        self.prefix = prefix or ""
        self.limit = page_limit(page_size)
        self.with_meta = with_meta
        self.max_inflate = max_inflate
        self.out = []

    def shard_attrs(self, name):
        try:
            return self.backend.stat(self.bucket, name)
        except ObjectNotFound:
            return None  # deleted since the previous page: nothing left to list in it

    def objects(self, after):
        """Objects after `after`, each shard followed by its files, until the page is full."""
        while True:
            want = self.limit - len(self.out)
            if want <= 0:
                return self.out, after
            attrs, nxt = self.backend.list_objects(
                self.bucket, prefix=self.prefix, page_size=want, start_after=after,
                with_meta=self.with_meta)
            for a in attrs:
                if len(self.out) == self.limit:
                    return self.out, after
                shard = format_from_name(a.name) is not None
                self.out.append((a, IS_ARCHIVE if shard else 0))
                after = a.name
                if shard:
                    tok = self.members(a, "")
                    if tok is not None:
                        return self.out, tok
            if not nxt:
                return self.out, ""

    def members(self, shard, after):
        """Append the files of `shard` (its ObjectAttrs, or None) named after `after` and
        under the prefix; the token to resume with when the page fills first, else None."""
        if shard is None:
            return None
        last = after
        for name, size in self._files(shard.name):
            full = f"{shard.name}/{name}"
            if name <= after or not full.startswith(self.prefix):
                continue
            if len(self.out) == self.limit:
                return f"{shard.name}{SEP}{last}"
            self.out.append((ObjectAttrs(size, shard.mtime_ns, shard.atime_ns, name=full,
                                         bucket=self.bucket), IN_ARCHIVE))
            last = name
        return None

    def _files(self, name):
        """[(file name, size)] of the shard's regular files, sorted; [] when it is gone or
        not a readable archive (then it is listed as a plain object, and the operator told)."""
        try:
            with self.backend.open_shard(self.bucket, name, InflateBudget(self.max_inflate)) as sh:
                members = sh.members()
        except ObjectNotFound:
            return []
        except ArchiveError as exc:
            log.warning("listing %s://%s/%s without its files: %s", self.backend.provider,
                        self.bucket, name, exc)
            return []
        files = {}
        for m in members:
            if m.kind != FILE:
                continue
            bare = m.name
            while bare.startswith("./"):
                bare = bare[2:]
            bare = bare.lstrip("/")
            if bare and bare not in files:
                files[bare] = m.size
        return sorted(files.items())
