"""List-objects flags through the real SDK: ARCH_DIR expands shards (every format, paging
included); every other flag is honoured, a no-op, or refused with a 400 naming it."""
import pytest
import requests

from aistore.sdk import ListObjectFlag
from aistore.sdk.errors import AISError

from .shards import EXT, shard_bytes

FILES = [("b.txt", b"bb"), ("./a.wav", b"a" * 300), ("dir/c.bin", b"c" * 70000),
         ("b.txt", b"duplicate: the first one wins")]
LISTED = [("a.wav", 300), ("b.txt", 2), ("dir/c.bin", 70000)]


@pytest.fixture
def shards(bucket):
    """One shard per format, plain objects around them, and a `.tar` that is no archive."""
    names = []
    for i, fmt in enumerate(EXT):
        name = f"s{i}{EXT[fmt]}"
        bucket.object(name).get_writer().put_content(shard_bytes(fmt, FILES))
        names.append(name)
    for name in ("a-plain", "s0.tar.bak", "z/last"):
        bucket.object(name).get_writer().put_content(b"x")
    bucket.object("broken.tar").get_writer().put_content(b"not a tar" * 100)
    return names


def expected(shards):
    out = [("a-plain", 1), ("broken.tar", 900)]
    for name in shards:
        out.append((name, None))
        out += [(f"{name}/{m}", size) for m, size in LISTED]
        if name == "s0.tar":
            out.append(("s0.tar.bak", 1))
    return sorted(out[:2]) + out[2:] + [("z/last", 1)]


def test_arch_dir_lists_members_after_each_shard(bucket, shards):
    entries = bucket.list_all_objects(flags=[ListObjectFlag.ARCH_DIR])
    got = [(e.name, e.size) for e in entries]
    want = expected(shards)
    assert [n for n, _ in got] == [n for n, _ in want]
    assert all(s == w for (_, s), (_, w) in zip(got, want) if w is not None)
    flags = {e.name: e.flags for e in entries}
    assert flags["s0.tar/a.wav"] & (1 << 7) and flags["s0.tar"] & (1 << 9)
    assert not flags["a-plain"]
    # without the flag: objects only
    assert [e.name for e in bucket.list_all_objects()] == sorted(
        ["a-plain", "broken.tar", "s0.tar.bak", "z/last"] + shards)


@pytest.mark.parametrize("page_size", [1, 2, 3, 5, 7])
def test_arch_dir_paging(bucket, shards, page_size):
    names, token, pages = [], "", 0
    while True:
        res = bucket.list_objects(page_size=page_size, continuation_token=token,
                                  flags=[ListObjectFlag.ARCH_DIR])
        assert len(res.entries) <= page_size
        names += [e.name for e in res.entries]
        token = res.continuation_token
        pages += 1
        if not token:
            break
    assert names == [n for n, _ in expected(shards)]
    assert pages >= len(names) // page_size
    # the iterator the datasets use pages the same way
    it = bucket.list_objects_iter(page_size=page_size, flags=[ListObjectFlag.ARCH_DIR])
    assert [e.name for e in it] == names


@pytest.mark.parametrize("fmt", list(EXT))
def test_list_archive(bucket, shards, fmt):
    name = shards[list(EXT).index(fmt)]
    got = [(e.name, e.size) for e in bucket.list_archive(name)]
    # the SDK lists by prefix, so (as on AIS) s0.tar.bak comes along with s0.tar
    extra = [("s0.tar.bak", 1)] if name == "s0.tar" else []
    assert got == [(f"{name}/{m}", s) for m, s in LISTED] + extra
    with_shard = bucket.list_archive(name, include_archive_obj=True, page_size=2)
    assert with_shard[0].name == name and len(with_shard) == 4 + len(extra)


def test_prefix_into_a_shard(bucket, shards):
    entries = bucket.list_all_objects(prefix="s4.zip/dir/", flags=[ListObjectFlag.ARCH_DIR])
    assert [(e.name, e.size) for e in entries] == [("s4.zip/dir/c.bin", 70000)]
    entries = bucket.list_all_objects(prefix="s1.tgz/", page_size=1,
                                      flags=[ListObjectFlag.ARCH_DIR])
    assert [e.name for e in entries] == [f"s1.tgz/{m}" for m, _ in LISTED]


def test_member_sizes_match_get(bucket, shards):
    for e in bucket.list_archive("s3.tar.lz4"):
        assert len(bucket.object(e.name).get_reader().read_all()) == e.size


def test_name_only_and_no_ops(bucket, shards):
    res = bucket.list_objects(flags=[ListObjectFlag.NAME_ONLY])
    assert res.entries[0].size == 0 and res.entries[0].name == "a-plain"
    res = bucket.list_objects(flags=[ListObjectFlag.NAME_SIZE])
    assert res.entries[0].size == 1
    noop = [ListObjectFlag.CACHED, ListObjectFlag.MISSING, ListObjectFlag.DELETED,
            ListObjectFlag.BCK_PRESENT, ListObjectFlag.DONT_HEAD_REMOTE,
            ListObjectFlag.DONT_ADD_REMOTE, ListObjectFlag.ONLY_REMOTE_PROPS,
            ListObjectFlag.NO_DIRS, ListObjectFlag.IS_S3]
    assert [e.name for e in bucket.list_all_objects(flags=noop)] == [
        e.name for e in bucket.list_all_objects()]


def test_no_recursion(bucket):
    for name in ("a", "d/x", "d/y/z", "d/y/zz", "d-1", "d/w", "e/f/g", "z"):
        bucket.object(name).get_writer().put_content(b"1")
    nr = [ListObjectFlag.NO_RECURSION]
    got = [(e.name, e.flags) for e in bucket.list_all_objects(flags=nr)]
    assert got == [("a", 0), ("d-1", 0), ("d/", 1 << 8), ("e/", 1 << 8), ("z", 0)]
    got = [e.name for e in bucket.list_all_objects(prefix="d/", flags=nr)]
    assert got == ["d/w", "d/x", "d/y/"]
    no_dirs = nr + [ListObjectFlag.NO_DIRS]
    assert [e.name for e in bucket.list_all_objects(flags=no_dirs)] == ["a", "d-1", "z"]
    for size in (1, 2):  # pages ending on a directory resume after all of it
        names, token = [], ""
        while True:
            res = bucket.list_objects(page_size=size, continuation_token=token, flags=nr)
            names += [e.name for e in res.entries]
            token = res.continuation_token
            if not token:
                break
        assert names == ["a", "d-1", "d/", "e/", "z"]
    with pytest.raises(AISError) as e:
        bucket.list_objects(flags=nr + [ListObjectFlag.ARCH_DIR])
    assert e.value.status_code == 400 and "NO_RECURSION" in e.value.message


@pytest.mark.parametrize("flag", ["NOT_CACHED", "DIFF", "NBI"])
def test_refused_flags_are_named(bucket, flag):
    with pytest.raises(AISError) as e:
        bucket.list_objects(flags=[ListObjectFlag[flag]])
    assert e.value.status_code == 400 and flag in e.value.message


@pytest.mark.parametrize("flags", ["x", "-1", "1.5", 8.0, "65536"])
def test_bad_flags_value(node, bucket, flags):
    r = requests.get(f"{node.url}/v1/buckets/{bucket.name}",
                     json={"action": "list", "value": {"flags": flags}})
    assert r.status_code == 400 and "flag" in r.json()["message"]
