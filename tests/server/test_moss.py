"""GetBatch end to end: the real SDK and requests against gunicorn, checked byte for byte."""
import gzip
import io
import json
import os
import random
import socket
import tarfile
import threading
import zipfile

import lz4.frame
import pytest
import requests

from getbatch.archive import open_writer

from tests.support.nodes import BOTH_PROVIDERS, Node, bucket_path, make_client, serve_argv


def moss(url, body, path=""):
    return requests.get(f"{url}/v1/ml/moss{path}", json=body)


def tar_members(data):
    """[(name, bytes)] of every regular member, read as a stream like the SDK does."""
    out = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|*") as tf:
        for m in tf:
            if m.isfile():
                out.append((m.name, tf.extractfile(m).read()))
    return out


def split_multipart(resp):
    ctype = resp.headers["Content-Type"]
    assert ctype.startswith("multipart/mixed; boundary=")
    boundary = ctype.split("boundary=")[1].encode()
    assert len(boundary) == 60
    parts = resp.content.split(b"--" + boundary)
    assert parts[0] == b"" and parts[-1] == b"--\r\n" and len(parts) == 4
    metas, archive = parts[1], parts[2]
    assert b'name="metadata"' in metas and b'name="archive"' in archive
    meta = json.loads(metas.split(b"\r\n\r\n", 1)[1])
    arch = archive.split(b"\r\n\r\n", 1)[1]
    assert arch.endswith(b"\r\n")
    return meta, arch[:-2]


def make_tar(members, fmt=tarfile.GNU_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def make_zip(members, method):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.fixture
def objs(bucket):
    rng = random.Random(7)
    data = {f"obj-{i}": rng.randbytes(rng.choice([0, 1, 511, 512, 513, 4096, 70000])) for i in range(12)}
    data["big"] = os.urandom(3 << 20)
    for name, d in data.items():
        bucket.object(name).get_writer().put_content(d)
    return data


@BOTH_PROVIDERS
@pytest.mark.parametrize("streaming", [True, False])
def test_sdk_batch_order_and_content(client, bucket, objs, streaming):
    names = list(objs) + ["obj-3", "obj-3"]
    batch = client.batch(names, bucket=bucket, streaming_get=streaming)
    got = list(batch.get())
    assert [i.obj_name for i, _ in got] == names
    for (info, data), name in zip(got, names):
        assert data == objs[name]
        assert info.err_msg is None and info.bucket == bucket.name
        if not streaming:
            assert info.size == len(objs[name])


def test_buffered_metadata(node, bucket, objs):
    r = moss(node.url, {"in": [{"objname": "obj-1", "opaque": "//4+P2lk"}, {"objname": "obj-2"},
                               {"objname": "obj-1"}], "strm": False}, f"/{bucket.name}")
    assert r.status_code == 200
    meta, arch = split_multipart(r)
    assert meta["uuid"].startswith("gbt-") and len(meta["out"]) == 3
    assert meta["out"][0] == {"objname": "obj-1", "bucket": bucket.name, "provider": "ais",
                              "size": len(objs["obj-1"]), "opaque": "//4+P2lk"}
    assert "err_msg" not in meta["out"][1]
    assert tar_members(arch) == [(f"{bucket.name}/obj-1", objs["obj-1"]),
                                 (f"{bucket.name}/obj-2", objs["obj-2"]),
                                 (f"{bucket.name}/obj-1", objs["obj-1"])]
    assert int(r.headers["Content-Length"]) == len(r.content)


def test_opaque_urlsafe_accepted_and_echoed_standard(client, bucket, objs):
    batch = client.batch(bucket=bucket, streaming_get=False)
    batch.add("obj-1", opaque=b"\xff\xfe>?id")
    (info, data), = list(batch.get())
    assert info.opaque == b"\xff\xfe>?id"


@BOTH_PROVIDERS
def test_ranges(client, bucket, objs):
    batch = client.batch(bucket=bucket, streaming_get=False)
    batch.add("big", start=10, length=5)
    batch.add("big", start=(3 << 20) - 7, length=-1)
    batch.add("big", start=0, length=-1)
    got = list(batch.get())
    assert got[0][1] == objs["big"][10:15] and got[0][0].size == 5
    assert got[1][1] == objs["big"][-7:]
    assert got[2][1] == objs["big"]


@pytest.mark.parametrize("mime,opener", [
    (".tgz", lambda b: gzip.decompress(b)), (".tar.gz", lambda b: gzip.decompress(b)),
    (".tar.lz4", lambda b: lz4.frame.decompress(b)), (".tar", lambda b: b)])
@pytest.mark.parametrize("strm", [True, False])
@BOTH_PROVIDERS
def test_output_formats_tar_family(node, bucket, objs, mime, opener, strm):
    names = list(objs)
    r = moss(node.url, {"in": [{"objname": n} for n in names], "mime": mime, "strm": strm}, bucket_path(bucket))
    assert r.status_code == 200
    body = r.content if strm else split_multipart(r)[1]
    if strm:
        assert r.headers["Content-Type"] == {".tar": "application/x-tar", ".tar.lz4": "application/x-lz4"}.get(
            mime, "application/gzip")
    assert tar_members(opener(body)) == [(f"{bucket.name}/{n}", objs[n]) for n in names]


@pytest.mark.parametrize("strm", [True, False])
def test_output_zip(node, client, bucket, objs, strm):
    names = list(objs)
    r = moss(node.url, {"in": [{"objname": n} for n in names], "mime": ".zip", "strm": strm}, f"/{bucket.name}")
    body = r.content if strm else split_multipart(r)[1]
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        assert [(i.filename, zf.read(i)) for i in zf.infolist()] == [(f"{bucket.name}/{n}", objs[n]) for n in names]
    got = list(client.batch(names, bucket=bucket, output_format=".zip", streaming_get=strm).get())
    assert [d for _, d in got] == [objs[n] for n in names]


def test_tar_has_content_length_compressed_is_chunked(node, bucket, objs):
    r = moss(node.url, {"in": [{"objname": "obj-1"}], "strm": True}, f"/{bucket.name}")
    assert int(r.headers["Content-Length"]) == len(r.content)
    r = moss(node.url, {"in": [{"objname": "obj-1"}], "strm": True, "mime": ".tgz"}, f"/{bucket.name}")
    assert r.headers.get("Transfer-Encoding") == "chunked"


INNER = [("a/b/c/file.txt", b"nested"), ("x.wav", os.urandom(3000)), ("empty", b""),
         ("dup", b"first"), ("dup", b"second"), ("./dotted", b"dot"), ("/rooted", b"root")]


@pytest.fixture
def shards(bucket):
    tar = make_tar(INNER)
    files = {
        "s.tar": tar, "s.tgz": gzip.compress(tar), "s.tar.gz": gzip.compress(tar),
        "s.tar.lz4": lz4.frame.compress(tar), "noext": tar,
        "s.zip": make_zip([m for m in INNER if m[0] != "dup" or m[1] == b"first"], zipfile.ZIP_STORED),
        "sd.zip": make_zip([m for m in INNER if m[0] != "dup" or m[1] == b"first"], zipfile.ZIP_DEFLATED),
    }
    for name, data in files.items():
        bucket.object(name).get_writer().put_content(data)
    return files


@pytest.mark.parametrize("shard", ["s.tar", "s.tgz", "s.tar.gz", "s.tar.lz4", "noext", "s.zip", "sd.zip"])
@pytest.mark.parametrize("strm", [True, False])
@BOTH_PROVIDERS
def test_archived_files_from_every_input_format(client, bucket, shards, shard, strm):
    want = [("a/b/c/file.txt", b"nested"), ("x.wav", INNER[1][1]), ("empty", b""), ("dup", b"first"),
            ("dotted", b"dot"), ("./dotted", b"dot"), ("rooted", b"root"), ("/x.wav", INNER[1][1])]
    batch = client.batch(bucket=bucket, streaming_get=strm)
    for ap, _ in want:
        batch.add(shard, archpath=ap)
    got = list(batch.get())
    assert [d for _, d in got] == [d for _, d in want]
    assert all(i.err_msg is None for i, _ in got)
    assert [i.archpath for i, _ in got] == [a for a, _ in want]


@BOTH_PROVIDERS
def test_member_names_and_ranges_in_members(node, bucket, shards):
    r = moss(node.url, {"in": [{"objname": "s.tgz", "archpath": "x.wav", "start": 100, "length": 50},
                               {"objname": "s.tar", "archpath": "/x.wav"},
                               {"objname": "s.tar", "start": 0, "length": 512}],
                        "strm": True}, bucket_path(bucket))
    got = tar_members(r.content)
    assert got[0] == (f"{bucket.name}/s.tgz/x.wav", INNER[1][1][100:150])
    assert got[1][0] == f"{bucket.name}/s.tar/x.wav"
    assert got[2] == (f"{bucket.name}/s.tar", shards["s.tar"][:512])


@BOTH_PROVIDERS
def test_coer_placeholders(client, node, bucket, shards, objs):
    body = {"in": [{"objname": "obj-1"}, {"objname": "missing"}, {"objname": "s.tar", "archpath": "nope"},
                   {"objname": "missing.tar", "archpath": "x"}], "coer": True, "strm": True}
    got = tar_members(moss(node.url, body, bucket_path(bucket)).content)
    b, p = bucket.name, bucket.provider.value
    assert [n for n, _ in got] == [f"{b}/obj-1", f"__404__/{b}/missing", f"__404__/{b}/s.tar/nope",
                                   f"__404__/{b}/missing.tar/x"]
    assert [len(d) for _, d in got[1:]] == [0, 0, 0]
    meta, _ = split_multipart(moss(node.url, dict(body, strm=False), bucket_path(bucket)))
    assert "err_msg" not in meta["out"][0]
    assert f"{p}://{b}/missing does not exist" in meta["out"][1]["err_msg"]
    assert f"nope in {p}://{b}/s.tar does not exist" in meta["out"][2]["err_msg"]
    got = tar_members(moss(node.url, dict(body, onob=True), bucket_path(bucket)).content)
    assert [n for n, _ in got] == ["obj-1", "__404__/missing", "__404__/s.tar/nope", "__404__/missing.tar/x"]
    sdk = list(client.batch(["obj-1", "missing"], bucket=bucket).get())
    assert sdk[0][0].err_msg is None and sdk[1][0].err_msg and sdk[1][1] == b""


def test_missing_file_in_a_lone_shard(node, bucket):
    """The seed's "a file from each shard, continue on error", in a bucket holding only that
    shard: on a cluster the nodes holding nothing of the bucket are asked for the missing file
    too, and lack it as a file, not as a bucket (a 404 "bucket does not exist" before)."""
    bucket.object("t.tar").get_writer().put_content(make_tar([("a", b"x" * 10)]))
    body = {"in": [{"objname": "t.tar", "archpath": "a"}, {"objname": "t.tar", "archpath": "zzz"}],
            "coer": True}
    b, p = bucket.name, bucket.provider.value
    for strm in (True, False):
        r = moss(node.url, dict(body, strm=strm), bucket_path(bucket))
        assert r.status_code == 200, r.text
        if strm:
            arch = r.content
        else:
            meta, arch = split_multipart(r)
            assert meta["out"][1]["err_msg"] == f"zzz in {p}://{b}/t.tar does not exist"
        assert tar_members(arch) == [(f"{b}/t.tar/a", b"x" * 10), (f"__404__/{b}/t.tar/zzz", b"")]


@BOTH_PROVIDERS
def test_zero_size_is_not_missing(client, bucket):
    bucket.object("zero").get_writer().put_content(b"")
    for strm in (True, False):
        (info, data), = list(client.batch(["zero"], bucket=bucket, streaming_get=strm).get())
        assert data == b"" and info.err_msg is None


def test_cross_bucket_and_onob(client, node, bucket, objs):
    other = client.bucket(bucket.name + "-other")
    other.create(exist_ok=True)
    try:
        other.object("o").get_writer().put_content(b"other")
        body = {"in": [{"objname": "obj-1", "bucket": bucket.name}, {"objname": "o", "bucket": other.name}],
                "strm": True}
        got = tar_members(moss(node.url, body).content)
        assert got == [(f"{bucket.name}/obj-1", objs["obj-1"]), (f"{other.name}/o", b"other")]
        got = tar_members(moss(node.url, dict(body, onob=True)).content)
        assert [n for n, _ in got] == ["obj-1", "o"]
        batch = client.batch(streaming_get=False)
        batch.add(bucket.object("obj-1"))
        batch.add(other.object("o"))
        assert [i.bucket for i, _ in batch.get()] == [bucket.name, other.name]
    finally:
        other.delete(missing_ok=True)


@pytest.mark.parametrize("strm", [True, False])
def test_ten_thousand_entries_in_order(node, bucket, strm):
    rng = random.Random(1)
    payloads = {}
    for i in range(300):
        payloads[f"f{i:03d}"] = rng.randbytes(rng.randint(0, 9000))
        bucket.object(f"f{i:03d}").get_writer().put_content(payloads[f"f{i:03d}"])
    order = [rng.choice(list(payloads)) for _ in range(10_000)]
    r = moss(node.url, {"in": [{"objname": n} for n in order], "strm": strm}, f"/{bucket.name}")
    assert r.status_code == 200
    body = r.content if strm else split_multipart(r)[1]
    got = tar_members(body)
    assert len(got) == 10_000
    assert got == [(f"{bucket.name}/{n}", payloads[n]) for n in order]


def test_same_bytes_with_and_without_zero_copy(node, plain_node, bucket, objs, shards):
    long_name = "deep/" * 30 + "ünïcode-名前.bin"
    bucket.object(long_name).get_writer().put_content(b"long")
    body = {"in": [{"objname": n} for n in objs] + [{"objname": long_name}, {"objname": "s.tgz", "archpath": "x.wav"},
                                                    {"objname": "s.tar", "archpath": "a/b/c/file.txt"}],
            "strm": True}
    a = moss(node.url, body, f"/{bucket.name}")
    b = moss(plain_node.url, body, f"/{bucket.name}")
    assert a.status_code == b.status_code == 200
    assert a.content == b.content
    assert a.headers["Content-Length"] == b.headers["Content-Length"]
    assert (f"{bucket.name}/{long_name}", b"long") in tar_members(a.content)


def _app_args(data_dir):
    from getbatch.config import Config
    from getbatch.store import open_storage
    cfg = Config(dict(data_dir=data_dir))
    return cfg, open_storage(cfg)


def test_same_bytes_under_another_wsgi_server(node, bucket, objs):
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from getbatch.server.app import create_app

    class Quiet(WSGIRequestHandler):
        def log_message(self, *a):
            pass

    srv = make_server("127.0.0.1", 0, create_app(*_app_args(node.data_dir)), handler_class=Quiet)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        body = {"in": [{"objname": n} for n in objs], "strm": True}
        a = moss(node.url, body, f"/{bucket.name}").content
        b = moss(f"http://127.0.0.1:{srv.server_port}", body, f"/{bucket.name}").content
        assert a == b
    finally:
        srv.shutdown()
        srv.server_close()


def test_client_disconnect_mid_stream(node, bucket, objs):
    body = json.dumps({"in": [{"objname": "big"}] * 30, "strm": True}).encode()
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", node.port))
        s.sendall(b"GET /v1/ml/moss/" + bucket.name.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
                  + b"\r\n\r\n" + body)
        s.recv(65536)
        s.close()
    r = moss(node.url, {"in": [{"objname": "obj-1"}], "strm": True}, f"/{bucket.name}")
    assert r.status_code == 200 and tar_members(r.content)[0][1] == objs["obj-1"]


def test_concurrent_batches(node, bucket, objs):
    names = list(objs) * 3
    want = [(f"{bucket.name}/{n}", objs[n]) for n in names]
    results = []

    def run(strm):
        c = make_client(node.url)
        got = list(c.batch(names, bucket=c.bucket(bucket.name), streaming_get=strm).get())
        results.append([(f"{bucket.name}/{i.obj_name}", d) for i, d in got])

    threads = [threading.Thread(target=run, args=(i % 2 == 0,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and all(r == want for r in results)


def test_writer_output_matches_server_tar(node, bucket, objs):
    """The server's .tar equals what the library's own writer makes of the same items."""
    names = list(objs)
    served = moss(node.url, {"in": [{"objname": n} for n in names], "strm": True}, f"/{bucket.name}").content
    buf = io.BytesIO()
    with open_writer("tar", buf) as w:
        for n in names:
            w.add(f"{bucket.name}/{n}", objs[n])
    assert served == buf.getvalue()


@BOTH_PROVIDERS
def test_sdk_plain_names_reach_into_shards(client, bucket, shards, objs):
    """`shard.tar/x.wav` in a plain name list means the file x.wav inside shard.tar."""
    names = ["obj-1", "s.tar/x.wav", "s.tgz/a/b/c/file.txt", "s.zip/x.wav"]
    for strm in (True, False):
        got = list(client.batch(names, bucket=bucket, streaming_get=strm).get())
        assert [d for _, d in got] == [objs["obj-1"], INNER[1][1], b"nested", INNER[1][1]]
        assert all(i.err_msg is None for i, _ in got)
    got = list(client.batch(["s.tar/none"], bucket=bucket).get())
    assert got[0][1] == b"" and got[0][0].err_msg


def _vouch_index(path, data_dir):
    """Re-seal the persisted index of the shard at `path` for the file's current identity, as a
    forged or wrongly trusted cache would: the server then plans from it without a scan."""
    import msgpack

    from getbatch.archive import index
    from getbatch.archive.shardfile import identify
    from getbatch.store.attrs import read_meta
    fd = os.open(path, os.O_RDONLY)
    try:
        file = index._index_file(os.path.join(data_dir, ".sys", "shard-index"), fd)
        ident = identify(fd, path, read_meta(fd)[0])  # the store's version is part of it
    finally:
        os.close(fd)
    with open(file, "rb") as f:
        fields = msgpack.unpackb(f.read()[len(index._MAGIC) + index._DIGEST:])
    fields[1] = list(ident)
    with open(file, "wb") as f:
        f.write(index.seal(msgpack.packb(fields)))


@pytest.fixture(scope="module")
def uncached_node(tmp_path_factory):
    """A node without an inflate cache, so compressed members are decompressed as they are
    sent (with a cache, a broken shard is found while planning: a 400)."""
    d = tmp_path_factory.mktemp("uncached")
    n = Node(d / "data", d / "server.log", serve_argv(), env={"GETBATCH_INFLATE_CACHE": "0"})
    yield n
    n.stop()


@pytest.mark.parametrize("mime", [".tar", ".tgz"])
def test_failure_after_status_line_is_detectable(uncached_node, mime):
    """A shard that breaks after planning (its index vouches for it) aborts the connection:
    the client sees an error, never a short but valid-looking archive; the server carries on."""
    import zlib

    node = uncached_node
    bucket = make_client(node.url).bucket(f"late{mime[1:]}")
    bucket.create(exist_ok=True)

    rng = random.Random(5)
    members = [(f"m{i}", rng.randbytes(20000)) for i in range(40)]
    data = gzip.compress(make_tar(members), mtime=0)
    bucket.object("late.tgz").get_writer().put_content(data)
    body = {"in": [{"objname": "late.tgz", "archpath": n} for n, _ in members], "strm": True, "mime": mime}
    assert moss(node.url, body, f"/{bucket.name}").status_code == 200     # index built and cached
    path = os.path.join(node.data_dir, "ais", bucket.name, "late.tgz")
    st = os.stat(path)
    broken = bytearray(data)
    broken[len(data) // 2:len(data) // 2 + 4096] = rng.randbytes(4096)
    with pytest.raises(zlib.error):
        zlib.decompress(bytes(broken), 31)
    with open(path, "r+b") as f:
        f.write(broken)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    _vouch_index(path, node.data_dir)  # a rewrite is a new version: its index must be vouched
    for _ in range(2):  # both workers
        with pytest.raises(requests.exceptions.RequestException):
            r = requests.get(f"{node.url}/v1/ml/moss/{bucket.name}", json=body, stream=True)
            assert r.status_code == 200
            got = r.content
            # a body that did arrive whole must not pass for the archive asked for
            assert False, f"complete body of {len(got)} bytes for a broken shard"
    bucket.object("after").get_writer().put_content(b"still serving")
    r = moss(node.url, {"in": [{"objname": "after"}], "strm": True}, f"/{bucket.name}")
    assert r.status_code == 200 and tar_members(r.content) == [(f"{bucket.name}/after", b"still serving")]
    tail = node.log()[-4000:]
    assert "aborted after the status line" in tail and "Traceback" not in tail
