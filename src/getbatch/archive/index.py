"""Shard indexes: each member's (name, data offset, size, kind), built once per shard version.

An index belongs to one version of one shard: it is keyed by the shardfile.Identity of the
fd the shard is read through (device, inode, size, mtime, ctime and the caller's version
string), so the offsets used for a read always come from the bytes that are read.

Loaded indexes live in the LRU of a ShardMemory, bounded by bytes (memory.py: a hot shard
costs one fstat to find again). With an `index_dir` they are also persisted there, one file
per shard path (named after a hash of the path the fd resolves to, so a new version replaces
the old file), written atomically (temp + rename). A persisted index is a cache and is
verified before use, never trusted:

- it is read with O_NOFOLLOW | O_NONBLOCK, only if fstat says regular file and it is no
  larger than `file_cap(shard size)` (a FIFO, a device or a symlink in its place is a miss);
- a blake2b digest covers its whole content, including the identity it claims, which must
  equal the shard's;
- every entry is checked against the shard: names are str of at most NAME_MAX bytes, kinds
  are known, 512 <= offset, offset % 512 == 0, 0 <= size, offset + size <= the data length
  (the file size for plain TAR, the decompressed length seen at build time for .tgz and
  .tar.lz4), and each entry starts after the previous one's data and a header block.

On any doubt the index is rebuilt from the shard and the file overwritten. It guards against
stale, damaged, truncated or foreign files, not against someone able to write the index
directory with intent (who could as well rewrite the shards). Indexes whose file would exceed
the cap are kept in memory only. An index that cannot be read or written is never an error.
"""
import array
import hashlib
import logging
import os
import stat
import tempfile
from collections.abc import Callable, Iterable
from typing import Any

import msgpack

from .memory import ShardMemory, estimate
from .member import DIR, FILE, HARDLINK, NAME_MAX, OTHER, SYMLINK, Member, find_variant
from .shardfile import Identity
from .tarblock import BLOCK, tar_pad

log = logging.getLogger("getbatch.archive")

_KINDS = (FILE, DIR, SYMLINK, HARDLINK, OTHER)
_KIND_CODE = {k: i for i, k in enumerate(_KINDS)}
_MAGIC = b"GBIDX\x00\x02\n"   # format 2: digest + identity-keyed body
_DIGEST = 32
_SUFFIX = ".gbidx"
_READ_OPEN = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK


def file_cap(shard_size: int) -> int:
    """Largest persisted index accepted for a shard of `shard_size` bytes. An index holds
    about the names plus 17 bytes per member; even a .tgz of empty members with long names
    that compress well stays far below 16 bytes of index per byte of shard."""
    return 64 * 1024 + 16 * shard_size


class ShardIndex:
    """Members of one shard in archive order, as columns, plus a name -> extent map of the
    regular files in which the FIRST member of a name wins."""

    __slots__ = ("names", "offsets", "sizes", "kinds", "files", "weight")

    def __init__(self, names: list[str], offsets: "array.array[int]", sizes: "array.array[int]",
                 kinds: bytes) -> None:
        self.names = names          # list[str]
        self.offsets = offsets      # array('q')
        self.sizes = sizes          # array('q')
        self.kinds = kinds          # bytes: index into _KINDS
        self.weight = estimate(names)
        n = len(names)
        if kinds.count(0) == n:
            # reversed so that the first of duplicate names is the one that stays
            self.files: dict[str, tuple[int, int]] = dict(zip(reversed(names), reversed(list(zip(offsets, sizes)))))
        else:
            files: dict[str, tuple[int, int]] = {}
            for i in range(n - 1, -1, -1):
                if kinds[i] == 0:
                    files[names[i]] = (offsets[i], sizes[i])
            self.files = files

    @classmethod
    def from_members(cls, members: list[Member]) -> "ShardIndex":
        return cls([m.name for m in members], array.array("q", [m.offset for m in members]),
                   array.array("q", [m.size for m in members]),
                   bytes(_KIND_CODE[m.kind] for m in members))

    def members(self) -> list[Member]:
        """A new list of the Members (not kept: it would double the index's memory)."""
        return [Member(n, o, s, _KINDS[k]) for n, o, s, k in
                zip(self.names, self.offsets, self.sizes, self.kinds)]

    def find(self, name: str) -> Member | None:
        """The regular-file Member called `name` or one of its name_variants, else None."""
        found = find_variant(self.files, name)
        if found is None:
            return None
        return Member(found[0], found[1][0], found[1][1], FILE)

    def __len__(self) -> int:
        return len(self.names)


EMPTY = ShardIndex([], array.array("q"), array.array("q"), b"")   # a closed shard's


def cached(fd: int | str, ident: Identity, fmt: str, memory: ShardMemory, *,
           index_dir: str | None = None) -> ShardIndex | None:
    """The index of the shard version open on `fd` (identity `ident`) if in `memory` or
    persisted (and verified), else None."""
    key = (ident, fmt)
    idx: ShardIndex | None = memory.parsed.get(key)
    if idx is not None:
        memory.stats["hits"] += 1
        return idx
    if index_dir is None:
        return None
    file = _index_file(index_dir, fd)
    if file is None:
        return None
    idx = _load(file, ident, fmt, memory)
    if idx is not None:
        memory.stats["loads"] += 1
        memory.parsed.put(key, idx)
    return idx


def persisted(fd: int | str, ident: Identity, fmt: str,
              index_dir: str | None) -> tuple[str, ShardIndex | None]:
    """("fresh", ShardIndex) when the index persisted for the shard version open on `fd` is
    usable, ("stale", None) when the file there is of another version or not usable (the next
    open rebuilds it), ("none", None) when there is none (or no `index_dir`). Builds nothing."""
    file = _index_file(index_dir, fd) if index_dir is not None else None
    if file is None:
        return "none", None
    try:
        blob = _read_capped(file, file_cap(ident.size))
    except FileNotFoundError:
        return "none", None
    except (OSError, _Reject):
        return "stale", None
    try:
        return "fresh", decode(blob, ident, fmt)
    except (_Stale, _Reject):
        return "stale", None


def store(fd: int | str, ident: Identity, fmt: str, members: list[Member], data_len: int,
          memory: ShardMemory, *, index_dir: str | None = None) -> ShardIndex:
    """Index freshly scanned `members` of the shard version open on `fd`: keep it in `memory`,
    persist it if asked. `data_len`: bytes of TAR data the members lie in (the file size
    for plain TAR, the decompressed length seen by the scan for compressed shards)."""
    idx = ShardIndex.from_members(members)
    memory.stats["builds"] += 1
    memory.parsed.put((ident, fmt), idx)
    if index_dir is not None:
        file = _index_file(index_dir, fd)
        if file is not None and _save(file, ident, fmt, data_len, idx):
            memory.stats["saves"] += 1
    return idx


def get(fd: int | str, ident: Identity, fmt: str, build: Callable[[], list[Member]],
        memory: ShardMemory, *, index_dir: str | None = None) -> ShardIndex:
    """The index of the plain TAR open on `fd`, calling `build()` -> [Member] only when none
    is usable (in `memory` or persisted)."""
    idx = cached(fd, ident, fmt, memory, index_dir=index_dir)
    if idx is None:
        idx = store(fd, ident, fmt, build(), ident.size, memory, index_dir=index_dir)
    return idx


def _index_file(index_dir: str | os.PathLike[str], fd: int | str) -> str | None:
    """The persisted index's path for the shard open on `fd`, named after the path the fd
    resolves to; None when it has none (unlinked, or no /proc): such an index stays in memory.
    `fd` may instead be a str naming the shard (a remote shard's URL: it has no local file)."""
    if isinstance(fd, str):
        real = fd
    else:
        try:
            real = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return None
        if not real.startswith("/") or real.endswith(" (deleted)"):
            return None
    digest = hashlib.sha256(os.fsencode(real)).hexdigest()[:40]
    return os.path.join(os.fspath(index_dir), digest + _SUFFIX)


def _body(ident: Identity, fmt: str, data_len: int, idx: ShardIndex) -> bytes:
    head: list[Any] = [fmt, list(ident), data_len]
    tail = [idx.offsets.tobytes(), idx.sizes.tobytes(), idx.kinds]
    try:
        return msgpack.packb(head + [False, idx.names] + tail)
    except UnicodeEncodeError:  # names with undecodable bytes (kept as surrogates)
        raw = [n.encode("utf-8", "surrogateescape") for n in idx.names]
        return msgpack.packb(head + [True, raw] + tail)


def encode(ident: Identity, fmt: str, data_len: int, idx: ShardIndex) -> bytes:
    """The persisted form of `idx`."""
    return seal(_body(ident, fmt, data_len, idx))


def seal(body: bytes) -> bytes:
    """Magic, blake2b digest of `body`, `body`: the file form of an index body."""
    return _MAGIC + hashlib.blake2b(body, digest_size=_DIGEST).digest() + body


def _save(file: str, ident: Identity, fmt: str, data_len: int, idx: ShardIndex) -> bool:
    """Whether `idx` was written to `file`."""
    blob = encode(ident, fmt, data_len, idx)
    if len(blob) > file_cap(ident.size):
        return False  # would be refused when loaded: keep it in memory only
    try:
        os.makedirs(os.path.dirname(file), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(file), prefix=".tmp-", suffix=_SUFFIX)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
            os.replace(tmp, file)  # also replaces a symlink or FIFO planted under that name
        except BaseException:
            os.unlink(tmp)
            raise
        return True
    except OSError:
        return False  # read-only or full cache dir: the index stays in memory only


class _Reject(Exception):
    """A persisted index that must not be used; the message says why."""


def _read_capped(file: str, cap: int) -> bytes:
    """The bytes of regular file `file` if it is at most `cap` bytes, else _Reject."""
    fd = os.open(file, _READ_OPEN)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _Reject("not a regular file")
        if st.st_size > cap:
            raise _Reject(f"{st.st_size} bytes, more than the {cap} allowed for this shard")
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, cap + 1 - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > cap:
                raise _Reject(f"grew past the {cap} bytes allowed while read")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _load(file: str, ident: Identity, fmt: str, memory: ShardMemory) -> ShardIndex | None:
    try:
        blob = _read_capped(file, file_cap(ident.size))
    except FileNotFoundError:
        return None
    except (OSError, _Reject) as exc:  # ELOOP for a symlink, EACCES, ...
        _rejected(file, exc, memory)
        return None
    try:
        return decode(blob, ident, fmt)
    except _Stale:
        return None  # another version of the shard (or another shard at that path)
    except _Reject as exc:
        _rejected(file, exc, memory)
        return None


def _rejected(file: str, why: Exception, memory: ShardMemory) -> None:
    memory.stats["rejects"] += 1
    log.warning("shard index %s is not usable (%s); rebuilding it from the shard", file, why)
    return None


class _Stale(Exception):
    """An intact index of another shard version."""


def decode(blob: bytes, ident: Identity, fmt: str) -> ShardIndex:
    """The ShardIndex in `blob` if it is intact and describes shard version `ident` read as
    `fmt`. Raises _Stale for an intact index of another version, _Reject for anything else."""
    if blob[:len(_MAGIC)] != _MAGIC:
        raise _Reject("unknown format")
    digest = blob[len(_MAGIC):len(_MAGIC) + _DIGEST]
    body = blob[len(_MAGIC) + _DIGEST:]
    if hashlib.blake2b(body, digest_size=_DIGEST).digest() != digest:
        raise _Reject("checksum mismatch")
    try:
        fields = msgpack.unpackb(body, use_list=False)
        f_fmt, f_ident, data_len, raw, names, offs, sizes, kinds = fields
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise _Reject(f"undecodable ({type(exc).__name__})") from None
    if f_fmt != fmt or f_ident != tuple(ident):
        raise _Stale
    if not (isinstance(offs, bytes) and isinstance(sizes, bytes) and isinstance(kinds, bytes)
            and isinstance(names, tuple) and type(data_len) is int and type(raw) is bool):
        raise _Reject("wrong field types")
    if fmt == "tar" and data_len != ident.size:
        raise _Reject(f"data length {data_len} is not the shard's size {ident.size}")
    n = len(names)
    if len(offs) != 8 * n or len(sizes) != 8 * n or len(kinds) != n:
        raise _Reject("column lengths disagree")
    if n and max(kinds) >= len(_KINDS):
        raise _Reject("unknown member kind")
    names = _check_names(names, raw)
    offsets = array.array("q")
    offsets.frombytes(offs)
    sz = array.array("q")
    sz.frombytes(sizes)
    _check_extents(offsets, sz, data_len)
    return ShardIndex(names, offsets, sz, kinds)


def _check_names(names: tuple[Any, ...], raw: bool) -> list[str]:
    want = bytes if raw else str
    short = NAME_MAX // 4  # a str this short cannot exceed NAME_MAX bytes in UTF-8
    for name in names:
        if type(name) is not want:
            raise _Reject("a member name of the wrong type")
        if len(name) > (NAME_MAX if raw else short):
            # not raw: `want` is str, so name is one
            size = len(name) if raw else len(name.encode("utf-8", "surrogateescape"))  # type: ignore[union-attr]
            if size > NAME_MAX:
                raise _Reject(f"a member name of {size} bytes")
    if raw:
        return [n.decode("utf-8", "surrogateescape") for n in names]
    return list(names)


def _check_extents(offsets: Iterable[int], sizes: Iterable[int], data_len: int) -> None:
    """Every member's data is block-aligned, after its own header and the previous member's
    data, and inside the first `data_len` bytes."""
    low = BLOCK  # the first data block follows at least one header
    for off, size in zip(offsets, sizes):
        if off < low or off % BLOCK or size < 0 or off + size > data_len:
            raise _Reject(f"member extent {off}+{size} impossible in {data_len} bytes of data")
        low = off + size + tar_pad(size) + BLOCK
