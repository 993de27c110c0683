"""Shard indexes: each member's (name, data offset, size, kind), built once per shard version.

An index is identified by the shard file (device, inode) plus its size and mtime_ns, so a shard
that is rewritten gets a new one. Loaded indexes live in a small process-wide LRU (a hot shard
costs one fstat to find again); with an `index_dir` they are also persisted there as a compact
msgpack blob named after a hash of the shard's real path, written atomically (temp + rename)
and reused only while the shard's size and mtime_ns are unchanged. An index is a cache: one
that cannot be read or written is rebuilt or skipped, never an error.
"""
import array
import hashlib
import os
import tempfile
import threading
from collections import OrderedDict

import msgpack

from .member import DIR, FILE, HARDLINK, OTHER, SYMLINK, Member, name_variants

_KINDS = (FILE, DIR, SYMLINK, HARDLINK, OTHER)
_KIND_CODE = {k: i for i, k in enumerate(_KINDS)}
_VERSION = 1
_SUFFIX = ".gbidx"

CACHE_SIZE = 256  # indexes kept in memory; a 1000-member index is ~150 KB
STATS = {"hits": 0, "loads": 0, "builds": 0, "saves": 0}  # for tests and diagnostics

_lock = threading.Lock()
_cache: "OrderedDict[tuple, ShardIndex]" = OrderedDict()


class ShardIndex:
    """Members of one shard in archive order, as columns, plus a name -> extent map of the
    regular files in which the FIRST member of a name wins."""

    __slots__ = ("names", "offsets", "sizes", "kinds", "files", "_members")

    def __init__(self, names, offsets, sizes, kinds):
        self.names = names          # list[str]
        self.offsets = offsets      # array('q')
        self.sizes = sizes          # array('q')
        self.kinds = kinds          # bytes: index into _KINDS
        self._members = None
        n = len(names)
        if kinds.count(0) == n:
            # reversed so that the first of duplicate names is the one that stays
            self.files = dict(zip(reversed(names), reversed(list(zip(offsets, sizes)))))
        else:
            files = {}
            for i in range(n - 1, -1, -1):
                if kinds[i] == 0:
                    files[names[i]] = (offsets[i], sizes[i])
            self.files = files

    @classmethod
    def from_members(cls, members):
        return cls([m.name for m in members], array.array("q", [m.offset for m in members]),
                   array.array("q", [m.size for m in members]),
                   bytes(_KIND_CODE[m.kind] for m in members))

    def members(self):
        if self._members is None:
            self._members = [Member(n, o, s, _KINDS[k]) for n, o, s, k in
                             zip(self.names, self.offsets, self.sizes, self.kinds)]
        return self._members

    def find(self, name):
        """The regular-file Member called `name` or one of its name_variants, else None."""
        ext = self.files.get(name)
        if ext is not None:
            return Member(name, ext[0], ext[1], FILE)
        for alt in name_variants(name):
            ext = self.files.get(alt)
            if ext is not None:
                return Member(alt, ext[0], ext[1], FILE)
        return None

    def __len__(self):
        return len(self.names)


def _key(st, fmt):
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, fmt)


def cached(path, st, fmt, *, index_dir=None):
    """The index of shard `path` (already fstat'ed as `st`) if in memory or persisted, else None."""
    key = _key(st, fmt)
    with _lock:
        idx = _cache.get(key)
        if idx is not None:
            _cache.move_to_end(key)
            STATS["hits"] += 1
            return idx
    if index_dir is None:
        return None
    idx = _load(_index_file(index_dir, path), os.path.realpath(path), st, fmt)
    if idx is not None:
        STATS["loads"] += 1
        _remember(key, idx)
    return idx


def store(path, st, fmt, members, *, index_dir=None):
    """Index freshly scanned `members` of shard `path`: keep it in memory, persist if asked."""
    idx = ShardIndex.from_members(members)
    STATS["builds"] += 1
    _remember(_key(st, fmt), idx)
    if index_dir is not None:
        _save(_index_file(index_dir, path), os.path.realpath(path), st, fmt, idx)
    return idx


def get(path, st, fmt, build, *, index_dir=None):
    """The index of shard `path`, calling `build()` -> [Member] only when none is usable."""
    idx = cached(path, st, fmt, index_dir=index_dir)
    if idx is None:
        idx = store(path, st, fmt, build(), index_dir=index_dir)
    return idx


def clear_cache():
    with _lock:
        _cache.clear()


def _remember(key, idx):
    with _lock:
        _cache[key] = idx
        _cache.move_to_end(key)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)


def _index_file(index_dir, path):
    real = os.path.realpath(path)
    digest = hashlib.sha256(os.fsencode(real)).hexdigest()[:40]
    return os.path.join(os.fspath(index_dir), digest + _SUFFIX)


def _save(file, real, st, fmt, idx):
    try:
        head = [_VERSION, fmt, real, st.st_size, st.st_mtime_ns]
        tail = [idx.offsets.tobytes(), idx.sizes.tobytes(), idx.kinds]
        try:
            blob = msgpack.packb(head + [False, list(idx.names)] + tail)
        except UnicodeEncodeError:  # names with undecodable bytes (kept as surrogates)
            raw = [n.encode("utf-8", "surrogateescape") for n in idx.names]
            blob = msgpack.packb(head + [True, raw] + tail)
        os.makedirs(os.path.dirname(file), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(file), prefix=".tmp-", suffix=_SUFFIX)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
            os.replace(tmp, file)
        except BaseException:
            os.unlink(tmp)
            raise
        STATS["saves"] += 1
    except OSError:
        pass  # read-only or full cache dir: the index stays in memory only


def _load(file, real, st, fmt):
    try:
        with open(file, "rb") as f:
            blob = f.read()
        (version, f_fmt, f_real, size, mtime_ns, raw, names, offs, sizes,
         kinds) = msgpack.unpackb(blob, use_list=False)
        if (version, f_fmt, f_real, size, mtime_ns) != (_VERSION, fmt, real, st.st_size,
                                                         st.st_mtime_ns):
            return None
        if raw:
            names = [n.decode("utf-8", "surrogateescape") for n in names]
        offsets = array.array("q")
        offsets.frombytes(offs)
        sz = array.array("q")
        sz.frombytes(sizes)
        n = len(names)
        if len(offsets) != n or len(sz) != n or len(kinds) != n or max(kinds, default=0) >= len(
                _KINDS):
            return None
        return ShardIndex(names, offsets, sz, kinds)
    except Exception:  # any unreadable or foreign file is just a cache miss
        return None
