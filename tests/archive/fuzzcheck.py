"""The properties every shard reader must keep on any input, as plain functions that raise
AssertionError: shared by the hypothesis tests (test_fuzz.py) and the atheris harnesses (fuzz/).

For any bytes given as a shard:
- no exception but the documented ArchiveError subclasses, no hang (a SIGALRM bound), no more
  memory than a small multiple of the input (tracemalloc peak, within the format's own
  expansion for compressed input);
- the Cython scanner / directory parser and its pure-Python twin give identical results
  (members, or the same error), from a buffer and from an fd;
- never wrong bytes. "Right" is stated per format so that it is checkable on mutated input:
  plain TAR: each member read is exactly the slice of the input at the extent the index holds
  (inside the file, block-aligned), and when tarfile also accepts the input, both list the same
  regular files at the same offsets; compressed TAR: the same against the stream that zlib /
  lz4 decompress independently, and the same members as the plain-TAR reader on that stream;
  ZIP: a read returns bytes of the size and CRC-32 in the directory, extent() of a stored
  member is a slice with that CRC, and when zipfile reads the member at the same local header
  it gets the same bytes.
"""
import contextlib
import gzip
import io
import itertools
import os
import signal
import tarfile
import tracemalloc
import warnings
import zipfile
import zlib

import lz4.frame

from getbatch.archive import ArchiveError, _accel, index, memory, open_shard
from getbatch.archive.member import FILE

_version = itertools.count()  # a fresh shard version per input: files get reused inodes
MiB = 1 << 20


class Hang(AssertionError):
    pass


@contextlib.contextmanager
def bounded(seconds=10):
    """Fail instead of hanging (main thread only)."""
    def on_alarm(*_):
        raise Hang(f"no result within {seconds} s")
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@contextlib.contextmanager
def memory_cap(limit):
    """AssertionError when Python allocations peak above `limit` bytes inside the block."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        yield
    finally:
        peak = tracemalloc.get_traced_memory()[1] - base
        if started:
            tracemalloc.stop()
    assert peak <= limit, f"peak allocation {peak} > {limit}"


def outcome(fn, *args, **kw):
    """("ok", result) or (error class name, message) for documented errors; anything else
    propagates and fails the property."""
    try:
        return ("ok", fn(*args, **kw))
    except ArchiveError as exc:
        return (type(exc).__name__, str(exc))


class Files:
    """Writes each input to a new file in `directory`."""

    def __init__(self, directory):
        self.directory = str(directory)
        self._n = itertools.count()

    def write(self, blob, suffix):
        path = os.path.join(self.directory, f"in{next(self._n) % 8}{suffix}")
        with open(path + ".tmp", "wb") as f:
            f.write(blob)
        os.replace(path + ".tmp", path)
        return path


# ---- TAR

def twin_scans(blob, path):
    """The scan outcome, after checking that every implementation agrees from a buffer, as a
    window of a stream (partial) and from an fd."""
    results = []
    fd = os.open(path, os.O_RDONLY)
    try:
        for mod in _accel.implementations("tarscan").values():
            whole = outcome(mod.scan, blob, shard="fuzz")
            from_fd = outcome(mod.scan_fd, fd, len(blob), shard="fuzz")
            part = outcome(mod.scan, blob, 1024, partial=True, shard="fuzz")
            assert whole == from_fd, (whole, from_fd)
            results.append((whole, part))
    finally:
        os.close(fd)
    assert all(r == results[0] for r in results), "Cython and Python scanners disagree"
    return results[0][0]


def first_files(members):
    files = {}
    for m in members:
        if m.kind == FILE:
            files.setdefault(m.name, m)
    return files


def read_all(path, version=None, **kw):
    """(format, members, {name: member looked up}, {name: bytes}, {name: extent}, read_many).
    A fresh shard version unless `version` is given."""
    if version is None:
        version = str(next(_version))
    with open_shard(path, version=version, **kw) as sh:
        members = sh.members()
        files = first_files(members)
        found = {n: sh.lookup(n) for n in files}
        data = {n: sh.read(n) for n in files}
        extents = {n: sh.extent(n) for n in files}
        many = sh.read_many(list(files)[::-1])
        return sh.format, members, found, data, extents, many


def tarfile_files(blob):
    """[(name, data offset, size)] of the regular files tarfile lists, or None when tarfile
    refuses the input or reads it another way on purpose (then no comparison is made):
    - a GNU or v7 header (magic not "ustar\\0") with bytes in the ustar prefix field:
      tarfile prepends them to the name; GNU tar, libarchive and we do not (GNU headers keep
      times there);
    - a global PAX header: tarfile applies its records to later members; we ignore it;
    - a GNU sparse member: a regular file to tarfile, an unreadable OTHER entry to us;
    - an old-style regular file (typeflag NUL) whose header name and final (PAX / long) name
      disagree on a trailing '/': tarfile decides directory-or-file on the header name, we on
      the final name;
    - a GNU long name with no NUL within its declared size: tarfile reads on into the block
      padding, we (like GNU tar) take exactly the declared bytes.
    tarfile also validates numeric fields we do not use (mode, uid, gid, mtime, device
    numbers) and silently ends the archive at a header where one is malformed: it may list
    fewer members, which check_tar allows for by comparing that prefix."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with tarfile.open(fileobj=io.BytesIO(blob), mode="r:", encoding="utf-8",
                              errors="surrogateescape") as t:
                members = t.getmembers()
                if t.pax_headers:
                    return None
    except (tarfile.TarError, ValueError, UnicodeError, OverflowError, EOFError):
        return None
    for m in members:
        h = blob[m.offset_data - 512:m.offset_data]
        header_name = h[:100].split(b"\0", 1)[0]
        if h[257:263] != b"ustar\0" and h[345:500].split(b"\0", 1)[0]:
            return None
        if m.type == tarfile.GNUTYPE_SPARSE:
            return None
        if h[156] == 0 and header_name.endswith(b"/") != m.name.endswith("/"):
            return None
        if _unterminated_long_name(blob, m.offset, m.offset_data - 512):
            return None
    return [(m.name, m.offset_data, m.size if m.isreg() else None) for m in members]


def _unterminated_long_name(blob, pos, end):
    """True if a GNU long-name header between `pos` and `end` has no NUL in its payload."""
    while pos < end:
        size_field = blob[pos + 124:pos + 136].split(b"\0", 1)[0].strip()
        try:
            size = int(size_field or b"0", 8)
        except ValueError:
            return False
        if blob[pos + 156:pos + 157] == b"L" and b"\0" not in blob[pos + 512:pos + 512 + size]:
            return True
        pos += 512 + -(-size // 512) * 512
    return False


def check_tar(blob, files, compare_tarfile=True):
    path = files.write(blob, ".tar")
    scanned = twin_scans(blob, path)
    with bounded(), memory_cap(4 * MiB + 16 * len(blob)):
        got = outcome(read_all, path)
    if got[0] != "ok":
        return got
    fmt, members, found, data, extents, many = got[1]
    if fmt != "tar":
        return got  # the magic bytes say another format: checked by its own property
    assert scanned == ("ok", members)
    for name, m in first_files(members).items():
        assert found[name] == m
        assert 512 <= m.offset and m.offset % 512 == 0 and m.offset + m.size <= len(blob)
        assert data[name] == blob[m.offset:m.offset + m.size]
        assert extents[name] == (m.offset, m.size)
    assert many == [data[n] for n in list(data)[::-1]]
    if compare_tarfile:
        theirs = tarfile_files(blob)
        if theirs is not None:
            ours = [(m.name, m.offset, m.size if m.kind == FILE else None) for m in members]
            assert len(theirs) <= len(ours) and [o[1] for o in ours[:len(theirs)]] == [
                t[1] for t in theirs], f"tarfile sees other members: {ours} != {theirs}"
            files = [t for t in theirs if t[2] is not None]
            assert [o for o in ours[:len(theirs)] if o[2] is not None] == files, \
                f"index disagrees with tarfile: {ours} != {theirs}"
            note("compared with tarfile" + (" (a prefix)" if len(theirs) < len(ours) else ""))
    return got


def note(what):
    """Counts an event (hypothesis statistics when run under hypothesis)."""
    try:
        from hypothesis import event
        event(what)
    except Exception:  # noqa: BLE001 - outside a hypothesis test there is nothing to count
        pass


# ---- compressed TAR

def inflate(blob, fmt):
    """The decompressed stream as the reference libraries see it, or None."""
    try:
        if fmt == "tgz":
            return gzip.decompress(blob)
        return lz4.frame.decompress(blob)
    except Exception:  # noqa: BLE001 - any refusal of the reference means: no reference
        return None


def check_compressed(blob, fmt, files):
    path = files.write(blob, ".tgz" if fmt == "tgz" else ".tar.lz4")
    stream = inflate(blob, fmt)
    cap = 8 * MiB + 2 * (len(stream) if stream is not None else 1100 * len(blob))
    with bounded(), memory_cap(cap):
        got = outcome(read_all, path)
    if got[0] != "ok" or got[1][0] != fmt or stream is None:
        return got
    _, members, found, data, extents, many = got[1]
    for name, m in first_files(members).items():
        assert found[name] == m and extents[name] is None
        assert data[name] == stream[m.offset:m.offset + m.size], "bytes differ from the stream"
    assert many == [data[n] for n in list(data)[::-1]]
    plain = outcome(read_all, files.write(stream, ".tar"))
    if plain[0] == "ok" and plain[1][0] == "tar":
        assert plain[1][1] == members, "compressed and plain readers list other members"
    return got


# ---- ZIP

def twin_directories(path, size):
    fd = os.open(path, os.O_RDONLY)
    try:
        results = [outcome(mod.read_central_directory, fd, size, "fuzz")
                   for mod in _accel.implementations("zipcd").values()]
    finally:
        os.close(fd)
    assert all(r == results[0] for r in results), "Cython and Python ZIP parsers disagree"
    return results[0]


def zipfile_read(blob, header_offset):
    """zipfile's bytes for the entry at local header `header_offset`, or None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with zipfile.ZipFile(io.BytesIO(blob)) as z:
                for info in z.infolist():
                    if info.header_offset == header_offset:
                        return z.read(info)
    except Exception:  # noqa: BLE001 - zipfile refusing the input: no reference
        return None
    return None


def check_zip(blob, files):
    path = files.write(blob, ".zip")
    directory = twin_directories(path, len(blob))
    with bounded(), memory_cap(4 * MiB + 1100 * len(blob)):
        opened = outcome(open_shard, path, name="fuzz.zip", version=str(next(_version)))
    if opened[0] != "ok":
        return opened
    with opened[1] as sh:
        if sh.format != "zip":
            return opened
        assert directory == ("ok", sh.members())
        for name, m in first_files(sh.members()).items():
            with bounded(), memory_cap(4 * MiB + 1100 * len(blob)):
                read = outcome(sh.read, name)
                ext = outcome(sh.extent, name)
            if read[0] == "ok":
                assert len(read[1]) == m.size and zlib.crc32(read[1]) == m.crc
                ref = zipfile_read(blob, m.offset)
                if ref is not None:
                    assert read[1] == ref, "bytes differ from zipfile's"
            if ext[0] == "ok" and ext[1] is not None:
                off, size = ext[1]
                assert zlib.crc32(blob[off:off + size]) == m.crc and size == m.size
                assert read == ("ok", blob[off:off + size])
    return opened


# ---- persisted index

def check_index(index_blob, shard_path, idx_dir, truth, sealed):
    """Open `shard_path` (version "") with `index_blob` in place of its persisted index. An
    index that is not sealed by us (the digest no longer matches) must never be used: the
    shard reads as `truth` (members, {name: bytes}). A re-sealed (forged) one may be used only
    if it passes the sanity checks: reads then stay inside the shard's data, and nothing but
    ArchiveError is raised."""
    fd = os.open(shard_path, os.O_RDONLY)
    try:
        target = index._index_file(idx_dir, fd)
    finally:
        os.close(fd)
    with open(target + ".tmp", "wb") as f:
        f.write(index_blob)
    os.replace(target + ".tmp", target)
    memory.DEFAULT.clear()
    members, contents = truth
    loads = memory.DEFAULT.stats["loads"]
    with bounded(), memory_cap(4 * MiB + 4 * len(index_blob)):
        got = outcome(read_all, shard_path, "", index_dir=idx_dir)
    used = memory.DEFAULT.stats["loads"] > loads
    if not sealed:
        assert not used, "a damaged index was used"
        assert got[0] == "ok" and got[1][1] == members
        assert got[1][3] == contents
        return got
    note("forged index used" if used else "forged index refused")
    if got[0] == "ok":
        size = os.path.getsize(shard_path)
        with open(shard_path, "rb") as f:
            blob = f.read()
        fmt, got_members = got[1][0], got[1][1]
        if fmt == "tar":
            for name, m in first_files(got_members).items():
                assert 0 <= m.offset and m.offset + m.size <= size
                assert got[1][3][name] == blob[m.offset:m.offset + m.size]
    return got
