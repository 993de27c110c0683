"""InflateCache: decompressed copies of .tgz/.tar.lz4 shards on disk, so decompression is paid once.

The pass that first decompresses a shard version (its index scan, or a fill pass when the index
is already known) also writes the stream to `<dir>/<digest>.inflated`; from then on the shard's
members are byte ranges of that file, served with pread/sendfile like a plain TAR's.

A cache file is verified, never trusted:
- it is named after the shard version (inflate.version_digest: the fstat identity of the
  shard's own fd), and its trailer records that digest;
- it is written as `<name>.tmp` under an exclusive flock and renamed when complete, so a
  partial file is never visible and two processes (or threads) never write the same file: the
  second one simply streams. A builder that died leaves an unlocked .tmp, reused or evicted;
- it is opened with O_NOFOLLOW | O_NONBLOCK and used only when fstat says it is a regular file
  (a FIFO, device or symlink in its place, or in place of its .tmp, is discarded, never waited
  on or followed);
- on open its size must match the trailer (stream length, one CRC-32 per 256 KiB block, the
  trailer's own CRC) and cover every member of the shard's index; then each block is checked
  against its CRC-32 the first time this process serves bytes of it. A mismatch discards the
  file (logged), and the shard decompresses instead.

Total size stays within `max_bytes`: a fill claims room in steps (max_bytes/16, at most 64 MiB)
and, when the files in the directory leave too little, the least recently used ones (by mtime,
refreshed on use) are evicted by whichever process sharing the directory needs the room
(under a flock on `<dir>/.lock`); a file that cannot fit even alone evicts nothing (its size
shows while the index scan writes it, or up front once the index is known). A shard bigger
than the cache, a full disk or an unusable directory means no cache file: the shard streams
as without a cache (after a write error, fills pause for a minute in this process).

Members are checked per 256 KiB block rather than per member: the check does not depend on
the index, and a block verified once serves every member in it.

File layout: stream bytes [0, L) | CRC-32 of each block (u32 LE) | footer (_FOOTER).
"""
import array
import fcntl
import logging
import os
import secrets
import stat
import struct
import sys
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from typing import NoReturn

try:  # ISA-L checksums ~10x faster than zlib; optional
    from isal.isal_zlib import crc32 as _crc
except ImportError:
    _crc = zlib.crc32

log = logging.getLogger("getbatch.inflatecache")

BLOCK = 256 << 10   # bytes per CRC-32 (verification granularity)
_CHUNK = 1 << 20    # bytes per pread when serving
_STEP = 64 << 20    # disk space claimed at a time while filling (at most; max_bytes/16 if less)
_TMP = ".tmp"
_MAGIC = b"GBINFL01"
# magic, shard version digest, nonce (new for every file), stream length, block size, and the
# CRC-32 of the block table followed by the footer's other fields
_FOOTER = struct.Struct("<8s32s16sQII")
_TOUCH_AFTER = 10.0   # seconds: a file's mtime (its LRU age) is refreshed at most this often
_SAFE = os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK   # a FIFO in place of a file: no hang
_PAUSE = 60.0         # seconds without fills after a write error
# bytes of verified-block maps a process remembers (one byte per block: 256 GiB of cache files)
_REMEMBERED = 1 << 20


class Stale(Exception):
    """A cache file failed verification while being read; it has been discarded."""


def _names_file(path: str, fd: int) -> bool:
    """True while `path` still names the file open on `fd`."""
    try:
        a, b = os.stat(path), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class InflateCache:
    """Decompressed shard copies in `directory`, at most `max_bytes` in all (0: no cache).
    One per server process; any number of processes may share the directory.

    The same verified, size-bounded LRU file cache serves other copies too (store/objcache.py:
    remote objects): a subclass names its files (`suffix`) and its log lines (`what`,
    `instead`: what happens when a file cannot be used)."""

    suffix = ".inflated"
    what = "inflate cache"
    instead = "the shard is decompressed instead"
    paused = "compressed shards are streamed without it"
    claim_step = 0      # bytes a fill claims at a time (0: max_bytes/16, 1 to 64 MiB)
    seen_total: int | None = None   # bytes in the directory after the last make_room() scan

    def __init__(self, directory: str, max_bytes: int) -> None:
        self.dir = os.fspath(directory)
        self.max_bytes = max_bytes
        self._paused_until = 0.0
        self._lock = threading.Lock()
        # (path, nonce) -> one byte per block, 1 once verified by this process; LRU by bytes
        self._verified: OrderedDict[tuple[str, bytes], bytearray] = OrderedDict()
        self._remembered = 0
        if max_bytes:
            try:
                os.makedirs(self.dir, exist_ok=True)
            except OSError as exc:
                self._pause(f"cannot create {self.dir}", exc)

    def _path(self, digest: bytes) -> str:
        return os.path.join(self.dir, digest.hex()[:40] + self.suffix)

    def _pause(self, what: str, exc: OSError) -> None:
        self._paused_until = time.monotonic() + _PAUSE
        log.warning("%s: %s (%s); %s for %ds", self.what, what, exc.strerror or exc,
                    self.paused, _PAUSE)

    # -- reading

    def open(self, digest: bytes, need: int, label: object) -> "CacheEntry | None":
        """The checked cache file of a shard version, holding at least `need` stream bytes, as
        a CacheEntry; None when there is none (a broken one is discarded). `label` names the
        shard in log lines."""
        if not self.max_bytes:
            return None
        path = self._path(digest)
        try:
            fd = os.open(path, os.O_RDONLY | _SAFE)
        except OSError:
            return None
        try:
            entry = self._check(fd, path, digest, need, label)
        except OSError as exc:  # unreadable: as if there were none (it may be replaced)
            log.warning("%s: cannot read %s (%s)", self.what, path, exc.strerror or exc)
            entry = None
        except BaseException:
            os.close(fd)
            raise
        if entry is None:
            os.close(fd)
        return entry

    def _check(self, fd: int, path: str, digest: bytes, need: int,
               label: object) -> "CacheEntry | None":
        st = os.fstat(fd)
        size = st.st_size
        why: str | None = None
        raw = b""  # the block table: read once the trailer checks out
        if not stat.S_ISREG(st.st_mode):
            why = "not a regular file"
        elif size < _FOOTER.size:
            why = "shorter than its trailer"
        else:
            foot = os.pread(fd, _FOOTER.size, size - _FOOTER.size)
            if len(foot) != _FOOTER.size:
                foot = bytes(_FOOTER.size)  # shrank meanwhile: fails the magic check
            magic, f_digest, nonce, length, block, crc = _FOOTER.unpack(foot)
            nblocks = -(-length // BLOCK)
            if magic != _MAGIC or block != BLOCK:
                why = "not a cache file of this version"
            elif f_digest != digest:
                why = "made for another version of the shard"
            elif size != length + 4 * nblocks + _FOOTER.size:
                why = "size does not match its trailer"
            elif length < need:
                why = "shorter than the shard's member data"
            else:
                raw = os.pread(fd, 4 * nblocks, length)
                if len(raw) != 4 * nblocks or _crc(raw + foot[:-4]) != crc:
                    why = "damaged block table"
        if why is not None:
            self.discard(path, st, label, why)
            return None
        table = array.array("I")
        table.frombytes(raw)
        if sys.byteorder == "big":
            table.byteswap()
        if time.time() - st.st_mtime > _TOUCH_AFTER:
            try:
                os.utime(fd)  # LRU: recently used files are evicted last
            except OSError:
                pass
        return CacheEntry(self, fd, path, st, label, length, table,
                          self._verified_map(path, nonce, nblocks))

    def _verified_map(self, path: str, nonce: bytes, nblocks: int, value: int = 0) -> bytearray:
        key = (path, nonce)
        with self._lock:
            seen = self._verified.get(key)
            if seen is None or len(seen) != nblocks:
                self._remembered += nblocks - (0 if seen is None else len(seen))
                seen = self._verified[key] = bytearray([value]) * nblocks
            self._verified.move_to_end(key)
            while self._remembered > _REMEMBERED and len(self._verified) > 1:
                self._remembered -= len(self._verified.popitem(last=False)[1])
        return seen

    def discard(self, path: str, st: os.stat_result, label: object, why: str) -> None:
        """Remove the cache file `st` (if `path` still names it) and say why."""
        log.warning("%s: %s of %s is %s: discarded, %s", self.what, path, label, why,
                    self.instead)
        try:
            now = os.stat(path)
            if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
                os.unlink(path)
        except OSError:
            pass

    # -- writing

    def fill(self, digest: bytes, label: object) -> "CacheFill | None":
        """A CacheFill writing the cache file of a shard version, or None: no cache, fills
        paused after an error, or someone else is writing that file right now."""
        if not self.max_bytes or time.monotonic() < self._paused_until:
            return None
        path = self._path(digest)
        tmp = path + _TMP
        try:
            try:
                fd = os.open(tmp, os.O_RDWR | os.O_CREAT | _SAFE, 0o600)
            except FileNotFoundError:  # the directory was removed: make it again
                os.makedirs(self.dir, exist_ok=True)
                fd = os.open(tmp, os.O_RDWR | os.O_CREAT | _SAFE, 0o600)
        except OSError as exc:
            self._pause(f"cannot create a file in {self.dir}", exc)
            return None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            self.discard(tmp, st, label, "not a regular file")
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # between our open and our lock its builder may have published it, or an evictor
            # removed it: then it is not ours to write
            if not _names_file(tmp, fd):
                os.close(fd)
                return None
            os.ftruncate(fd, 0)  # a dead builder's leftover
        except BlockingIOError:
            os.close(fd)
            return None
        except OSError as exc:
            os.close(fd)
            self._pause(f"cannot write in {self.dir}", exc)
            return None
        return CacheFill(self, fd, path, tmp, digest, label)

    def make_room(self, extra: int, own: int = 0) -> bool:
        """Evict least recently used cache files until `extra` more bytes fit within max_bytes
        (counting every file in the directory, in-progress ones included); False if they
        cannot fit. `own`: bytes the requesting file already holds (nothing is evicted for a
        file that cannot fit even alone)."""
        if own + extra > self.max_bytes:
            return False
        try:
            lock = os.open(os.path.join(self.dir, ".lock"), os.O_RDWR | os.O_CREAT | _SAFE,
                           0o600)
        except OSError:
            return False
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            done: list[tuple[int, int, str]] = []
            temps: list[tuple[int, int, str]] = []
            total = 0
            with os.scandir(self.dir) as it:
                for e in it:
                    if not (e.name.endswith(self.suffix) or e.name.endswith(self.suffix + _TMP)):
                        continue
                    try:
                        st = e.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    total += st.st_size
                    (temps if e.name.endswith(_TMP) else done).append(
                        (st.st_mtime_ns, st.st_size, e.path))
            self.seen_total = total + extra
            if total + extra <= self.max_bytes:
                return True
            for _, size, path in temps:
                if _remove_abandoned(path):
                    total -= size
            done.sort()
            for _, size, path in done:
                if total + extra <= self.max_bytes:
                    break
                try:
                    os.unlink(path)  # a process still reading it keeps its open copy
                except FileNotFoundError:
                    pass
                total -= size
            self.seen_total = total + extra
            return total + extra <= self.max_bytes
        finally:
            os.close(lock)


def _remove_abandoned(tmp: str) -> bool:
    """Remove an in-progress file whose builder is gone (its lock is free); False if in use."""
    try:
        fd = os.open(tmp, os.O_RDONLY | _SAFE)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if _names_file(tmp, fd):
            os.unlink(tmp)
            return True
        return False
    except OSError:
        return False
    finally:
        os.close(fd)


class CacheEntry:
    """One open, checked cache file: the shard's decompressed stream at [0, length).
    Reads verify each block they touch the first time this process reads it; a mismatch
    discards the file and raises Stale (`bad` is then true)."""

    __slots__ = ("cache", "fd", "path", "st", "label", "length", "table", "verified", "bad")

    def __init__(self, cache: InflateCache, fd: int, path: str, st: os.stat_result, label: object,
                 length: int, table: "array.array[int]", verified: bytearray) -> None:
        self.cache = cache
        self.fd = fd
        self.path = path
        self.st = st
        self.label = label
        self.length = length
        self.table = table
        self.verified = verified
        self.bad = False

    def _stale(self, why: str) -> NoReturn:
        if not self.bad:
            self.bad = True
            self.cache.discard(self.path, self.st, self.label, why)
        raise Stale(why)

    def _pread(self, n: int, off: int) -> bytes:
        try:
            data = os.pread(self.fd, n, off)
        except OSError as exc:
            self._stale(f"unreadable ({exc.strerror or exc})")
        if len(data) != n:
            self._stale("shorter than recorded")
        return data

    def read(self, off: int, n: int) -> bytes:
        """Bytes [off, off+n) of the stream, every block they touch verified."""
        if n <= 0:
            return b""
        if self.bad:
            raise Stale("discarded")
        end = off + n
        if end > self.length:
            self._stale(f"missing bytes up to {end}")
        b0, b1 = off // BLOCK, (end - 1) // BLOCK + 1
        if self.verified.find(0, b0, b1) < 0:
            return self._pread(n, off)
        lo, hi = b0 * BLOCK, min(b1 * BLOCK, self.length)
        span = self._pread(hi - lo, lo)
        view = memoryview(span)
        for b in range(b0, b1):
            if not self.verified[b]:
                s = (b - b0) * BLOCK
                if _crc(view[s:s + BLOCK]) != self.table[b]:
                    self._stale(f"damaged (bytes {b * BLOCK}+{BLOCK} do not match their CRC-32)")
                self.verified[b] = 1
        return span if (lo, hi) == (off, end) else span[off - lo:end - lo]

    def chunks(self, off: int, n: int) -> Iterator[bytes]:
        """read() of [off, off+n) in chunks of at most 1 MiB."""
        end = off + n
        while off < end:
            data = self.read(off, min(end - off, _CHUNK))
            yield data
            off += len(data)

    def verify(self, off: int, n: int) -> None:
        """Verify the blocks of [off, off+n) this process has not verified yet; Stale if any
        does not match."""
        end = off + n
        while off < end:
            step = min(end - off, _CHUNK)
            if self.verified.find(0, off // BLOCK, (off + step - 1) // BLOCK + 1) >= 0:
                self.read(off, step)
            off += step

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class CacheFill:
    """Writes one cache file while its shard's stream goes by: `write(chunk)` for each
    decompressed chunk in order (False once the fill is abandoned: no room, a write error),
    then `commit()` (publishes it; returns its CacheEntry) or `abort()`."""

    def __init__(self, cache: InflateCache, fd: int, path: str, tmp: str, digest: bytes,
                 label: object) -> None:
        self.cache = cache
        self.fd = fd
        self.path = path
        self.tmp = tmp
        self.digest = digest
        self.label = label
        self.written = 0
        self.claimed = 0          # bytes make_room() has made room for
        self.table = array.array("I")
        self.crc = 0              # of the current, incomplete block
        self.filled = 0           # its bytes
        self.active = True

    def write(self, chunk: bytes | bytearray | memoryview) -> bool:
        if not self.active:
            return False
        n = len(chunk)
        try:
            if self.written + n > self.claimed:
                step = self.cache.claim_step or max(min(_STEP, self.cache.max_bytes >> 4),
                                                    1 << 20)
                grow = max(n, min(step, self.cache.max_bytes - self.written))
                if not self.cache.make_room(grow, self.written):
                    self.abort()
                    return False
                self.claimed = self.written + grow
            _write_all(self.fd, chunk)
        except OSError as exc:
            self.cache._pause(f"cannot write the copy of {self.label}", exc)
            self.abort()
            return False
        self.written += n
        view = memoryview(chunk)
        pos = 0
        while pos < n:
            take = min(BLOCK - self.filled, n - pos)
            self.crc = _crc(view[pos:pos + take], self.crc)
            self.filled += take
            pos += take
            if self.filled == BLOCK:
                self.table.append(self.crc)
                self.crc = self.filled = 0
        return True

    def commit(self) -> CacheEntry | None:
        """Publish the file (atomically, by rename); its CacheEntry, or None if that failed."""
        if not self.active:
            return None
        table = array.array("I", self.table)
        if self.filled:
            table.append(self.crc)
        if sys.byteorder == "big":
            table.byteswap()
        raw = table.tobytes()
        head = _FOOTER.pack(_MAGIC, self.digest, secrets.token_bytes(16), self.written, BLOCK,
                            0)[:-4]
        tail = raw + head + struct.pack("<I", _crc(raw + head))
        try:
            if not self.cache.make_room(len(tail), self.written):
                self.abort()
                return None
            _write_all(self.fd, tail)
            os.rename(self.tmp, self.path)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            st = os.fstat(self.fd)
        except OSError as exc:
            self.cache._pause(f"cannot write the copy of {self.label}", exc)
            self.abort()
            return None
        self.active = False
        if sys.byteorder == "big":
            table.byteswap()
        nonce = head[40:56]
        # this process wrote every block from the stream itself: verified
        seen = self.cache._verified_map(self.path, nonce, len(table), 1)
        return CacheEntry(self.cache, self.fd, self.path, st, self.label, self.written, table, seen)

    def abort(self) -> None:
        if self.active:
            self.active = False
            try:
                os.unlink(self.tmp)  # still ours: we hold its lock
            except OSError:
                pass
            os.close(self.fd)
