"""Bucket and object API through the real AIS SDK 2.0.0 and raw requests against gunicorn."""
import io
import os
import tarfile

import msgpack
import pytest
import requests

from aistore.sdk.errors import AISError, ErrBckAlreadyExists, ErrBckNotFound, ErrObjNotFound


def test_bucket_lifecycle(client, node):
    b = client.bucket("lifecycle-bck")
    b.create()
    with pytest.raises(ErrBckAlreadyExists):
        b.create()
    b.create(exist_ok=True)
    assert requests.head(f"{node.url}/v1/buckets/lifecycle-bck?provider=ais").status_code == 200
    names = [x.name for x in client.cluster().list_buckets()]
    assert "lifecycle-bck" in names
    b.delete()
    with pytest.raises(ErrBckNotFound):
        b.delete()
    b.delete(missing_ok=True)
    assert requests.head(f"{node.url}/v1/buckets/lifecycle-bck?provider=ais").status_code == 404


def test_put_get_head_delete(bucket):
    obj = bucket.object("dir/a b+c.txt")
    obj.get_writer().put_content(b"hello world")
    assert obj.get_reader().read_all() == b"hello world"
    props = obj.head()
    assert props.size == 11 and props.present
    obj.delete()
    with pytest.raises(ErrObjNotFound):
        obj.get_reader().read_all()
    with pytest.raises(AISError):
        obj.head()


def test_missing_bucket_is_bucket_error(client):
    with pytest.raises(ErrBckNotFound):
        client.bucket("no-such-bck").object("x").get_writer().put_content(b"1")


def test_range_get(bucket, node):
    bucket.object("r").get_writer().put_content(bytes(range(100)))
    url = f"{node.url}/v1/objects/{bucket.name}/r?provider=ais"
    r = requests.get(url, headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == bytes(range(10, 20))
    assert r.headers["Content-Range"] == "bytes 10-19/100"
    r = requests.get(url, headers={"Range": "bytes=-5"})
    assert r.status_code == 206 and r.content == bytes(range(95, 100))
    r = requests.get(url, headers={"Range": "bytes=200-"})
    assert r.status_code == 416 and r.headers["Content-Range"] == "bytes */100"
    assert bucket.object("r").get_reader(byte_range="bytes=90-").read_all() == bytes(range(90, 100))


@pytest.mark.parametrize("size", [0, 1, (32 << 10) - 1, 32 << 10, (32 << 10) + 1, 1 << 20])
def test_whole_get_small_and_large(bucket, node, size):
    """Small objects leave as bytes, larger ones as a file (sendfile): same bytes, same headers."""
    data = os.urandom(size)
    bucket.object(f"s{size}").get_writer().put_content(data)
    r = requests.get(f"{node.url}/v1/objects/{bucket.name}/s{size}?provider=ais")
    assert r.status_code == 200 and r.content == data
    assert r.headers["Content-Length"] == str(size)
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.headers["Ais-Name"] == f"s{size}" and r.headers["Ais-Present"] == "true"
    assert bucket.object(f"s{size}").get_reader().read_all() == data


def test_head_headers(bucket, node):
    bucket.object("h").get_writer().put_content(b"x" * 1234)
    r = requests.head(f"{node.url}/v1/objects/{bucket.name}/h?provider=ais&props=name,size")
    assert r.status_code == 200
    assert r.headers["Content-Length"] == "1234" and r.headers["Ais-Present"] == "true"


def test_append_writer(bucket):
    obj = bucket.object("appended")
    with obj.get_writer().as_file() as f:
        f.write(b"part1-")
        f.write(b"part2")
    assert obj.get_reader().read_all() == b"part1-part2"


def test_list_objects_msgpack_paging(bucket, node):
    names = [f"p/{i:04d}" for i in range(25)] + ["q/x"]
    for n in names:
        bucket.object(n).get_writer().put_content(n.encode())
    got = [e.name for e in bucket.list_all_objects(prefix="p/")]
    assert got == names[:25]
    it = [e.name for e in bucket.list_objects_iter(prefix="p/", page_size=7)]
    assert it == names[:25]
    r = requests.get(f"{node.url}/v1/buckets/{bucket.name}?provider=ais",
                     headers={"Accept": "application/msgpack"},
                     json={"action": "list", "value": {"prefix": "q", "props": "name,size"}})
    assert r.headers["Content-Type"] == "application/msgpack"
    doc = msgpack.unpackb(r.content)
    assert doc["UUID"] and doc["ContinuationToken"] == "" and doc["Entries"] == [{"n": "q/x", "s": 3}]


def test_archpath_get(bucket, node):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in (("a/1.txt", b"one"), ("2.wav", b"two!")):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    bucket.object("shard.tar").get_writer().put_content(buf.getvalue())
    url = f"{node.url}/v1/objects/{bucket.name}/shard.tar?provider=ais&archpath=a%2F1.txt&archregx="
    r = requests.get(url)
    assert r.status_code == 200 and r.content == b"one"
    assert bucket.object("shard.tar").get_reader(archive_config=None).read_all() == buf.getvalue()
    r = requests.get(url.replace("a%2F1.txt", "nope"))
    assert r.status_code == 404 and "nope in ais://" in r.text


@pytest.mark.parametrize("path", ["a/%2E%2E/%2E%2E/etc/passwd", "%2E%2E/x", "a/%2E/b", "~/x", "dir/"])
def test_path_traversal_refused(bucket, node, path):
    r = requests.put(f"{node.url}/v1/objects/{bucket.name}/{path}?provider=ais", data=b"evil")
    assert r.status_code == 400, r.text
    # empty and dot segments are refused at the edge (server/edge.py), the rest by name rules
    assert r.json()["message"].startswith(("invalid object name", "invalid URL path"))


def test_error_body_is_ais_shaped(node):
    r = requests.get(f"{node.url}/v1/objects/nobucket/x?provider=ais")
    assert r.status_code == 404
    body = r.json()
    assert body["status"] == 404 and "ais://nobucket" in body["message"] and body["method"] == "GET"
    r = requests.get(f"{node.url}/v1/nothing-here")
    assert r.status_code == 404 and r.json()["status"] == 404


def test_smap_and_ready(client):
    assert client.cluster().is_ready()
    smap = client.cluster().get_info()
    assert len(smap.tmap) == 1


def test_aborted_upload_leaves_nothing(bucket, node):
    import socket
    import time

    bucket.object("keep").get_writer().put_content(b"old content")
    for name in ("fresh", "keep"):
        s = socket.create_connection(("127.0.0.1", node.port))
        s.sendall(f"PUT /v1/objects/{bucket.name}/{name}?provider=ais HTTP/1.1\r\nHost: x\r\n"
                  "Content-Length: 100000\r\n\r\n".encode() + b"partial" * 10)
        time.sleep(0.2)
        s.close()
    # the node sees the closes in its own time: polled, not slept for
    tmp = os.path.join(node.data_dir, ".sys", "tmp")
    deadline = time.monotonic() + 20
    while os.listdir(tmp):
        assert time.monotonic() < deadline, os.listdir(tmp)
        time.sleep(0.05)
    with pytest.raises(ErrObjNotFound):
        bucket.object("fresh").get_reader().read_all()
    assert bucket.object("keep").get_reader().read_all() == b"old content"
    assert [e.name for e in bucket.list_all_objects()] == ["keep"]


def test_archived_file_failing_mid_stream_is_detectably_incomplete(bucket, node):
    """A deflated member bigger than `window` (checked whole before the status line up to that:
    test_damaged_zip.py) whose CRC-32 turns out wrong after its bytes went out: the connection
    closes short of Content-Length (one log line, no traceback), and the node serves on."""
    import zipfile

    data = os.urandom(1 << 20) * 33  # over the default window of 32 MiB; compresses to ~1 MiB
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("m.bin", data)
    blob = bytearray(buf.getvalue())
    cd = blob.rfind(b"PK\x01\x02")
    blob[cd + 16:cd + 20] = bytes(4)  # the central directory's CRC-32 of m.bin
    bucket.object("bad.zip").get_writer().put_content(bytes(blob))
    url = f"{node.url}/v1/objects/{bucket.name}/bad.zip?provider=ais&archpath=m.bin"
    with pytest.raises(requests.exceptions.RequestException):
        r = requests.get(url, stream=True)
        assert r.status_code == 200 and int(r.headers["Content-Length"]) == len(data)
        got = r.content
        assert False, f"a complete body of {len(got)} bytes for a corrupt member"
    assert "bad.zip'" in node.log() and "aborted after the status line" in node.log()
    bucket.object("ok").get_writer().put_content(b"fine")
    assert bucket.object("ok").get_reader().read_all() == b"fine"
