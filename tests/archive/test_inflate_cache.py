"""InflateCache: a compressed TAR shard is decompressed once per version, then served from a
verified cache file; damaged, foreign or stale cache files are never served; the total stays
within the budget; a cache that cannot be written changes nothing but speed."""
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading

import pytest

from getbatch.archive import InflateBudget, InflateCache, memory, open_shard
from getbatch.archive import inflatecache
from tarhelp import bomb, bulk, compress, make_tar, write_shard

MiB = 1 << 20
X = bulk(3 * MiB + 123, seed=7)            # the member stored after the zeros


def zeros_then_x(tmp_path, fmt="tgz", zeros=256 * MiB, stem="z"):
    """A shard whose member x lies after `zeros` bytes of zeros."""
    path = tmp_path / (stem + {"tgz": ".tgz", "tar.lz4": ".tar.lz4"}[fmt])
    path.write_bytes(bomb(fmt, zeros, name="zeros", after=[("x", X), ("y", b"why")]))
    memory.DEFAULT.clear()
    return path


def cache_files(d, suffix=".inflated"):
    return sorted(n for n in os.listdir(d) if n.endswith(suffix)) if os.path.isdir(d) else []


def serve(path, cache, **kw):
    """One 'request': a new shard with its own budget; the member x through every read path."""
    budget = InflateBudget(0)
    with open_shard(path, cache=cache, budget=budget, **kw) as sh:
        ext = sh.extent("x")
        if ext is not None:
            assert os.pread(sh.fileno(), ext[1], ext[0]) == X
        assert b"".join(sh.iter_member("x")) == X
        assert b"".join(sh.iter_member("x", MiB + 5, MiB)) == X[MiB + 5:2 * MiB + 5]
        assert sh.read_many(["y", "x"]) == [b"why", X]
        return ext, sh.passes, budget.used


@pytest.mark.parametrize("fmt", ["tgz", "tar.lz4"])
def test_decompressed_once_then_served_from_the_cache(tmp_path, fmt):
    path = zeros_then_x(tmp_path, fmt)
    cache = InflateCache(tmp_path / "cache", 1 << 30)
    ext, passes, used = serve(path, cache)         # first request: the index scan fills it
    stream = 256 * MiB + 512 + len(X)
    assert ext is not None and passes == 1 and stream <= used < stream + 2 * MiB
    assert len(cache_files(cache.dir)) == 1 and not cache_files(cache.dir, ".tmp")
    ext2, passes, used = serve(path, cache)        # second: nothing decompressed
    assert (ext2, passes, used) == (ext, 0, 0)
    fresh = InflateCache(cache.dir, 1 << 30)       # another process: verifies, never inflates
    assert serve(path, fresh) == (ext, 0, 0)


def test_index_known_before_the_cache_gets_one_fill_pass(tmp_path):
    path = zeros_then_x(tmp_path, zeros=64 * MiB)
    with open_shard(path) as sh:
        sh.members()                               # indexed without a cache
    cache = InflateCache(tmp_path / "cache", 1 << 30)
    ext, passes, used = serve(path, cache)
    assert ext is not None and passes == 1 and used >= 64 * MiB
    assert serve(path, cache)[1:] == (0, 0)


def test_no_fill_pass_beyond_the_request_budget(tmp_path):
    path = zeros_then_x(tmp_path, zeros=64 * MiB)
    with open_shard(path) as sh:
        sh.members()
    cache = InflateCache(tmp_path / "cache", 1 << 30)
    with open_shard(path, cache=cache, budget=InflateBudget(32 * MiB)) as sh:
        assert sh.extent("y") is None and sh.passes == 0
    assert cache_files(cache.dir) == []


def test_reused_by_another_process(tmp_path):
    path = zeros_then_x(tmp_path, zeros=64 * MiB)
    idx, cdir = tmp_path / "idx", tmp_path / "cache"
    serve(path, InflateCache(cdir, 1 << 30), index_dir=idx)
    code = textwrap.dedent("""
        import json, os, sys
        from getbatch.archive import InflateBudget, InflateCache, open_shard
        b = InflateBudget(0)
        with open_shard(sys.argv[1], index_dir=sys.argv[2], budget=b,
                        cache=InflateCache(sys.argv[3], 1 << 30)) as sh:
            off, n = sh.extent("x")
            data = os.pread(sh.fileno(), n, off)
            print(json.dumps([sh.passes, b.used, data == open(sys.argv[4], "rb").read()]))
    """)
    (tmp_path / "want").write_bytes(X)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", code, str(path), str(idx), str(cdir),
                          str(tmp_path / "want")], capture_output=True, text=True, env=env,
                         check=True)
    assert json.loads(out.stdout) == [0, 0, True]


def _same_size_versions(k, lengths=(("a", 300_000), ("x", 100_000))):
    """`k` random versions of one shard whose .tar.lz4 files have the same size: random data
    compresses to one of a few sizes (a chance repeat saves lz4 a byte), so draw until one
    size has come up `k` times."""
    by_size = {}
    for _ in range(500):
        items = [(n, os.urandom(size)) for n, size in lengths]
        versions = by_size.setdefault(len(compress(make_tar(items), "tar.lz4")), [])
        versions.append(items)
        if len(versions) == k:
            return versions
    raise AssertionError(f"no {k} versions of one size in 500 draws: {sorted(by_size)}")


def test_a_replaced_shard_is_decompressed_again(tmp_path):
    """Same name, same size, same mtime: a new version all the same (new inode, or ctime)."""
    first, *later = _same_size_versions(3)
    path = write_shard(tmp_path, "s", make_tar(first), "tar.lz4")
    cache = InflateCache(tmp_path / "cache", 1 << 30)
    with open_shard(path, cache=cache) as sh:
        assert sh.read("x") == first[1][1] and sh.passes == 1
    st = os.stat(path)
    for how, items in zip(("rename", "in place"), later):
        new = write_shard(tmp_path, "new", make_tar(items), "tar.lz4")
        assert os.path.getsize(new) == st.st_size
        if how == "rename":
            os.replace(new, path)
        else:
            with open(path, "r+b") as f:
                f.write(new.read_bytes())
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        memory.DEFAULT.clear()
        with open_shard(path, cache=cache) as sh:
            assert sh.extent("x") is not None and sh.passes == 1, how
            assert sh.read("x") == items[1][1], how
        with open_shard(path, cache=cache) as sh:
            assert sh.read("x") == items[1][1] and sh.passes == 0, how


def _flip(cache_dir, offset):
    (name,) = cache_files(cache_dir)
    with open(os.path.join(cache_dir, name), "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x10]))


def test_tampered_member_bytes_are_never_served(tmp_path, caplog):
    path = zeros_then_x(tmp_path, zeros=64 * MiB)
    cache = InflateCache(tmp_path / "cache", 1 << 30)
    ext, _, _ = serve(path, cache)
    _flip(cache.dir, ext[0] + 2 * MiB + 77)      # inside x, in its third MiB
    caplog.set_level(logging.WARNING, "getbatch.inflatecache")
    # a process that has not verified it yet: found at extent(), file discarded, x inflated
    with open_shard(path, cache=InflateCache(cache.dir, 1 << 30)) as sh:
        assert sh.extent("x") is None
        assert sh.read("x") == X and sh.passes == 1
    assert cache_files(cache.dir) == []
    assert "do not match their CRC-32" in caplog.text and str(path) in caplog.text
    ext2, passes, _ = serve(path, cache)          # rebuilt by the next request
    assert ext2 == ext and passes == 1 and len(cache_files(cache.dir)) == 1
    # found while streaming, after the first MiBs went out: the rest comes from the shard
    _flip(cache.dir, ext[0] + 2 * MiB + 77)
    with open_shard(path, cache=InflateCache(cache.dir, 1 << 30)) as sh:
        chunks = sh.iter_member("x")
        assert b"".join(chunks) == X and sh.passes == 1
    assert cache_files(cache.dir) == []


@pytest.mark.parametrize("damage", ["truncate", "append", "trailer", "table", "foreign"])
def test_broken_cache_files_are_discarded_on_open(tmp_path, damage):
    path = zeros_then_x(tmp_path, zeros=64 * MiB)
    cache = InflateCache(tmp_path / "cache", 1 << 30)
    serve(path, cache)
    (name,) = cache_files(cache.dir)
    file = os.path.join(cache.dir, name)
    size = os.path.getsize(file)
    if damage == "truncate":
        os.truncate(file, size - 1000)
    elif damage == "append":
        with open(file, "ab") as f:
            f.write(b"x")
    elif damage == "trailer":
        _flip(cache.dir, size - 30)             # the stream length
    elif damage == "table":
        _flip(cache.dir, size - 80)             # a block CRC
    else:  # the cache file of another shard under this one's name
        other = zeros_then_x(tmp_path, zeros=64 * MiB, stem="other")
        serve(other, cache)
        (theirs,) = set(cache_files(cache.dir)) - {name}
        os.replace(os.path.join(cache.dir, theirs), file)
    with open_shard(path, cache=InflateCache(cache.dir, 1 << 30), budget=InflateBudget(0)) as sh:
        assert sh.read("x") == X
        assert sh.passes == 1                    # a fill pass: the broken file was replaced
    assert serve(path, InflateCache(cache.dir, 1 << 30))[1:] == (0, 0)


def test_eviction_keeps_the_total_within_the_budget(tmp_path):
    paths = [zeros_then_x(tmp_path, zeros=64 * MiB, stem=f"s{i}") for i in range(4)]
    one = 64 * MiB + 4 * MiB
    # fills claim room in steps of 1/16 of the budget: three files and a step fit
    budget = (3 * one) * 17 // 16
    cache = InflateCache(tmp_path / "cache", budget)
    for p in paths[:3]:
        serve(p, cache)
    files = cache_files(cache.dir)
    assert len(files) == 3
    # make them old, in order; then use the first again: it becomes the most recent
    for age, name in zip((300, 200, 100), files_by_use(cache.dir, files)):
        os.utime(os.path.join(cache.dir, name), (0, os.path.getmtime(
            os.path.join(cache.dir, name)) - age))
    assert serve(paths[0], cache)[1] == 0
    serve(paths[3], cache)
    left = cache_files(cache.dir)
    assert len(left) == 3 and total(cache.dir) <= budget
    assert serve(paths[1], cache)[1] == 1        # the least recently used one was evicted
    assert serve(paths[0], cache)[1] == 1 or serve(paths[3], cache)[1] == 0


def files_by_use(d, names):
    return sorted(names, key=lambda n: os.path.getmtime(os.path.join(d, n)))


def total(d):
    return sum(os.path.getsize(os.path.join(d, n)) for n in os.listdir(d))


def test_a_shard_bigger_than_the_cache_streams(tmp_path):
    small = zeros_then_x(tmp_path, zeros=64 * MiB, stem="small")
    big = zeros_then_x(tmp_path, zeros=128 * MiB, stem="big")
    cache = InflateCache(tmp_path / "cache", 100 * MiB)
    ext, passes, _ = serve(big, cache)     # its size shows only while it is scanned
    assert ext is None and passes >= 2     # streamed as without a cache
    assert cache_files(cache.dir) == [] and not cache_files(cache.dir, ".tmp")
    serve(small, cache)
    before = cache_files(cache.dir)
    ext, passes, _ = serve(big, cache)     # indexed now: known too big, it evicts nothing
    assert ext is None and cache_files(cache.dir) == before


def test_unusable_directory_streams(tmp_path, caplog):
    (tmp_path / "file").write_bytes(b"")
    caplog.set_level(logging.WARNING, "getbatch.inflatecache")
    cache = InflateCache(tmp_path / "file" / "cache", 1 << 30)
    assert "cannot create" in caplog.text
    path = zeros_then_x(tmp_path, zeros=64 * MiB)
    ext, passes, _ = serve(path, cache)
    assert ext is None and passes >= 2


def test_write_errors_leave_no_file_and_pause_fills(tmp_path):
    """A real failing write (the file size limit: EFBIG, as a full disk gives ENOSPC)."""
    path = zeros_then_x(tmp_path, zeros=64 * MiB)
    code = textwrap.dedent("""
        import json, os, resource, signal, sys, logging
        logging.basicConfig(level=logging.WARNING)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (8 << 20, resource.RLIM_INFINITY))
        from getbatch.archive import InflateCache, open_shard
        cache = InflateCache(sys.argv[2], 1 << 30)
        out = []
        for _ in range(2):
            with open_shard(sys.argv[1], cache=cache) as sh:
                out.append([sh.extent("x") is None, len(sh.read("x")), sh.passes])
        print(json.dumps([out, sorted(os.listdir(sys.argv[2]))]))
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    res = subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "c")],
                         capture_output=True, text=True, env=env, check=True)
    runs, left = json.loads(res.stdout)
    assert runs == [[True, len(X), 2], [True, len(X), 1]]   # the 2nd: no fill attempted
    assert [n for n in left if n != ".lock"] == []
    assert "File too large" in res.stderr and "streamed without it" in res.stderr


_RACE = textwrap.dedent("""
    import json, os, sys, time
    from getbatch.archive import InflateBudget, InflateCache, open_shard
    while not os.path.exists(sys.argv[3]):
        time.sleep(0.001)
    with open_shard(sys.argv[1], cache=InflateCache(sys.argv[2], 1 << 30)) as sh:
        ext = sh.extent("x")
        data = os.pread(sh.fileno(), ext[1], ext[0]) if ext else sh.read("x")
        print(json.dumps([ext is not None, sh.passes,
                          data == open(sys.argv[4], "rb").read()]))
""")


def test_concurrent_builders_never_corrupt(tmp_path):
    path = zeros_then_x(tmp_path, zeros=128 * MiB)
    (tmp_path / "want").write_bytes(X)
    go, cdir = tmp_path / "go", tmp_path / "cache"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    procs = [subprocess.Popen([sys.executable, "-c", _RACE, str(path), str(cdir), str(go),
                               str(tmp_path / "want")], stdout=subprocess.PIPE, text=True,
                              env=env) for _ in range(3)]
    go.write_bytes(b"")
    results = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert all(ok for _, _, ok in results)
    assert len(cache_files(cdir)) == 1 and not cache_files(cdir, ".tmp")
    # threads of one process: one fills, the others stream meanwhile
    memory.DEFAULT.clear()
    for name in cache_files(cdir):
        os.unlink(os.path.join(cdir, name))
    cache = InflateCache(cdir, 1 << 30)
    got = []

    def one():
        with open_shard(path, cache=cache) as sh:
            got.append(sh.read("x") == X)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [True] * 3 and len(cache_files(cdir)) == 1
    assert serve(path, cache)[1:] == (0, 0)


def test_cache_off(tmp_path):
    path = zeros_then_x(tmp_path, zeros=64 * MiB)
    cache = InflateCache(tmp_path / "cache", 0)
    ext, passes, _ = serve(path, cache)
    assert ext is None and passes >= 2 and not os.path.exists(cache.dir)


def test_verified_blocks_are_remembered_per_process(tmp_path, monkeypatch):
    path = zeros_then_x(tmp_path, zeros=64 * MiB)
    cache = InflateCache(tmp_path / "cache", 1 << 30)
    serve(path, cache)
    reader = InflateCache(cache.dir, 1 << 30)
    checked = []
    real = inflatecache._crc

    def counting(data, *rest):
        if isinstance(data, memoryview):   # a block (the table is checked as bytes, per open)
            checked.append(len(data))
        return real(data, *rest)

    monkeypatch.setattr(inflatecache, "_crc", counting)
    with open_shard(path, cache=reader) as sh:
        sh.extent("x")
    first = len(checked)
    assert first >= len(X) // inflatecache.BLOCK
    with open_shard(path, cache=reader) as sh:
        sh.extent("x")
        sh.read("x")
    assert len(checked) == first


def test_verified_block_maps_are_bounded_by_bytes(tmp_path, monkeypatch):
    monkeypatch.setattr(inflatecache, "_REMEMBERED", 10_000)
    cache = InflateCache(tmp_path / "cache", 1 << 30)
    for i in range(50):                              # fifty files of 1,000 blocks (250 MiB) each
        cache._verified_map(f"f{i}", b"n", 1000)
    assert len(cache._verified) == 10 and cache._remembered == 10_000
    cache._verified_map("huge", b"n", 50_000)        # one map over the bound is still kept alone
    assert list(cache._verified) == [("huge", b"n")] and cache._remembered == 50_000


@pytest.mark.parametrize("what", ["fifo", "symlink", "fifo.tmp"])
def test_a_fifo_or_symlink_in_place_of_a_cache_file_is_never_waited_on(tmp_path, what):
    path = zeros_then_x(tmp_path, zeros=64 * MiB)
    cache = InflateCache(tmp_path / "cache", 1 << 30)
    serve(path, cache)
    (name,) = cache_files(cache.dir)
    file = os.path.join(cache.dir, name)
    os.unlink(file)
    if what == "symlink":
        os.symlink(tmp_path / "elsewhere", file)
        (tmp_path / "elsewhere").write_bytes(b"x" * 100)
    else:
        os.mkfifo(file if what == "fifo" else file + ".tmp")
    done = []

    def request():
        with open_shard(path, cache=InflateCache(cache.dir, 1 << 30),
                        budget=InflateBudget(0)) as sh:
            done.append(sh.read("x") == X)

    t = threading.Thread(target=request, daemon=True)
    t.start()
    t.join(30)
    assert done == [True], "a request for the shard hung or failed"
    if what == "symlink":
        assert (tmp_path / "elsewhere").read_bytes() == b"x" * 100
