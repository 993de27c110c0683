"""Odd names and hostile requests get a clear 4xx (or work), never a 500, and lose nothing."""
import io
import json
import os
import subprocess
import tarfile
import time

import pytest
import requests

from aistore.sdk.errors import AISError, ErrObjNotFound

from tests.support.nodes import Node, serve_argv

ODD_NAMES = ["日本語.txt", "emoji-🙂/ok", "ünï cödé/ß", "a%2Fb", "tab-free spaces  x", "x" * 200 + "é"]


@pytest.mark.parametrize("name", ODD_NAMES)
def test_non_latin1_names_round_trip_through_every_api(client, bucket, node, name):
    obj = bucket.object(name)
    obj.get_writer().put_content(b"0123456789")
    assert obj.get_reader().read_all() == b"0123456789"
    props = obj.head()
    assert props.size == 10 and props.present
    assert obj.get_reader(byte_range="bytes=2-4").read_all() == b"234"
    assert name in [e.name for e in bucket.list_all_objects()]
    got = list(client.batch([name], bucket=bucket).get())
    assert [(i.obj_name, d) for i, d in got] == [(name, b"0123456789")]
    obj.delete()
    with pytest.raises(ErrObjNotFound):
        obj.get_reader().read_all()
    with pytest.raises(AISError) as ei:
        obj.head()
    assert ei.value.status_code == 404


@pytest.mark.parametrize("raw", ["a%0D%0Ab", "a%0Ab", "%00x", "ctl%07", "%ff%fe", "ok/%c3%28"])
def test_unrepresentable_names_are_refused_at_put(bucket, node, raw):
    url = f"{node.url}/v1/objects/{bucket.name}/{raw}"
    r = requests.put(url, data=b"x")
    assert r.status_code == 400, r.text
    assert "invalid object name" in r.json()["message"]
    for method in (requests.get, requests.head):
        assert method(url).status_code in (400, 404)
    assert [e.name for e in bucket.list_all_objects()] == []


def test_too_long_names_in_a_batch_are_400(bucket, node):
    bucket.object("short").get_writer().put_content(b"s")
    for name in ("x" * 300, "d/" + "y" * 256, "z/" * 2000 + "w"):
        body = {"in": [{"objname": "short"}, {"objname": name}], "strm": True}
        r = requests.get(f"{node.url}/v1/ml/moss/{bucket.name}", json=body)
        assert r.status_code == 400, r.text
        assert "too long" in r.json()["message"] or "longer than" in r.json()["message"]


@pytest.mark.parametrize("path,wrap", [("/v1/ml/moss/{b}", lambda deep: b'{"in":' + deep + b"}"),
                                       ("/v1/buckets/{b}", lambda deep: b'{"action":"list","value":' + deep + b"}"),
                                       ("/v1/buckets/{b}", lambda deep: deep)])
def test_deeply_nested_json_is_400(bucket, node, path, wrap):
    deep = b"[" * 5000 + b"]" * 5000
    r = requests.get(node.url + path.format(b=bucket.name), data=wrap(deep))
    assert r.status_code == 400, r.text
    assert "nested too deeply" in r.json()["message"] or "expecting" in r.json()["message"]


@pytest.mark.parametrize("lso", [{"prefix": 5}, {"props": ["name"]}, {"start_after": {"x": 1}},
                                 {"continuation_token": 7}, {"pagesize": "10"}, {"uuid": 3},
                                 {"pagesize": -1}, {"pagesize": True}])
def test_list_objects_with_wrong_types_is_400(bucket, node, lso):
    r = requests.get(f"{node.url}/v1/buckets/{bucket.name}", json={"action": "list", "value": lso})
    assert r.status_code == 400, r.text
    assert r.json()["status"] == 400


def test_unknown_and_unconfigured_providers(bucket, node):
    for path in (f"/v1/objects/{bucket.name}/x?provider=zzz", f"/v1/buckets/{bucket.name}?provider=zzz",
                 f"/v1/ml/moss/{bucket.name}?provider=zzz"):
        r = requests.get(node.url + path, json={"in": [{"objname": "x"}]})
        assert r.status_code == 400 and "invalid bucket provider" in r.json()["message"], r.text
    for path in (f"/v1/objects/{bucket.name}/x?provider=gs", f"/v1/buckets/{bucket.name}?provider=gcp",
                 f"/v1/ml/moss/{bucket.name}?provider=az"):
        r = requests.get(node.url + path, json={"in": [{"objname": "x"}]})
        assert r.status_code == 404, r.text
        msg = r.json()["message"]
        assert "does not exist" in msg and "no" in msg and "backend is configured" in msg
    for path in (f"/v1/objects/{bucket.name}/x?provider=s3", f"/v1/ml/moss/{bucket.name}?provider=aws"):
        r = requests.get(node.url + path, json={"in": [{"objname": "x"}]})  # not on the S3 server
        assert r.status_code == 404, r.text
        assert r.json()["message"] == f'bucket "aws://{bucket.name}" does not exist', r.text
    body = {"in": [{"objname": "x", "bucket": bucket.name, "provider": "gs"}]}
    r = requests.get(f"{node.url}/v1/ml/moss", json=body)
    assert r.status_code == 404 and f'"gcp://{bucket.name}"' in r.json()["message"]


@pytest.fixture(scope="module")
def small_node(tmp_path_factory):
    d = tmp_path_factory.mktemp("small")
    n = Node(d / "data", d / "server.log", serve_argv(workers=1, threads=2),
             env={"GETBATCH_MAX_BODY": "64KiB", "GETBATCH_MAX_ENTRIES": "50"})
    requests.post(f"{n.url}/v1/buckets/s", json={"action": "create-bck"}).raise_for_status()
    requests.put(f"{n.url}/v1/objects/s/o", data=b"o").raise_for_status()
    yield n
    n.stop()


def test_request_body_limit_is_413(small_node):
    url = f"{small_node.url}/v1/ml/moss/s"
    big = json.dumps({"in": [{"objname": "o", "opaque": "A" * 100_000}]}).encode()
    r = requests.get(url, data=big)
    assert r.status_code == 413 and "max_body" in r.json()["message"], r.text

    def chunked():
        yield big[:1000]
        yield big[1000:]
    r = requests.get(url, data=chunked())
    assert r.status_code == 413, r.text
    # a refused body is not read to its end to reach the next request: the connection closes
    r = requests.get(url, data=b" " * (8 << 20))
    assert r.status_code == 413, r.text
    assert "8388608 request body bytes left unread" in small_node.log()
    r = requests.get(f"{small_node.url}/v1/buckets/s", data=b'{"action":"list", "value":{"prefix":"' +
                     b"p" * 70_000 + b'"}}')
    assert r.status_code == 413, r.text
    assert requests.get(url, json={"in": [{"objname": "o"}], "strm": True}).status_code == 200


def _send_body(port, total, rate=None, chunk=256 << 10):
    """Send a GetBatch head and `total` body bytes (at `rate` bytes/s), then read the answer
    to its end: (bytes sent, the answer, or the error that ended the exchange)."""
    import socket
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    sent, t0, block = 0, time.monotonic(), b" " * chunk
    try:
        s.sendall(f"GET /v1/ml/moss/s HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n\r\n"
                  .encode())
        while sent < total:
            s.sendall(block)
            sent += len(block)
            if rate and sent / rate > time.monotonic() - t0:
                time.sleep(sent / rate - (time.monotonic() - t0))
        answer = b""
        while (data := s.recv(1 << 16)):
            answer += data
        return sent, answer
    except OSError as exc:
        return sent, exc
    finally:
        s.close()


def test_a_refused_body_is_drained_so_the_client_reads_the_413(small_node):
    """A client that sends its whole body before it reads (most do) once got a reset after
    the first 64 KiB: the node lingers, discarding what comes, as nginx's lingering_close."""
    sent, answer = _send_body(small_node.port, 24 << 20, rate=40 << 20)
    assert sent == 24 << 20
    assert isinstance(answer, bytes) and answer.startswith(b"HTTP/1.1 413"), answer
    assert b"max_body" in answer


def test_the_linger_is_bounded_in_bytes(small_node):
    from getbatch.server.worker import LINGER_BYTES
    sent, answer = _send_body(small_node.port, 2 * LINGER_BYTES, chunk=4 << 20)
    assert isinstance(answer, OSError) and LINGER_BYTES <= sent < 2 * LINGER_BYTES


def test_entry_limit_is_400(small_node):
    url = f"{small_node.url}/v1/ml/moss/s"
    ok = requests.get(url, json={"in": [{"objname": "o"}] * 50, "strm": True})
    assert ok.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(ok.content)) as tf:
        assert len(tf.getmembers()) == 50
    for n in (51, 3000):
        r = requests.get(url, json={"in": [{"objname": "o"}] * n, "strm": True})
        assert r.status_code == 400 and "max_entries" in r.json()["message"], r.text


def test_full_disk_is_507_and_keeps_the_old_version(tmp_path):
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], check=True,
                       capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"mounting a small tmpfs needs root (mount: {exc})")
    try:
        n = Node(mnt / "data", tmp_path / "server.log", serve_argv(workers=1, threads=2))
        try:
            u = f"{n.url}/v1/objects/d"
            requests.post(f"{n.url}/v1/buckets/d", json={"action": "create-bck"}).raise_for_status()
            requests.put(f"{u}/keep", data=b"old version").raise_for_status()
            for attempt in ({"data": os.urandom(6 << 20)},
                            {"data": os.urandom(6 << 20), "params": {"append_type": "append"}}):
                r = requests.put(f"{u}/keep", **attempt)
                assert r.status_code == 507, r.text
                assert "no space left" in r.json()["message"]
            assert requests.get(f"{u}/keep").content == b"old version"
            assert os.listdir(mnt / "data" / ".sys" / "tmp") == []
            assert "Traceback" not in n.log()
        finally:
            n.stop()
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_chunked_put_stores_the_whole_body(bucket, node):
    parts = [os.urandom(n) for n in (1, 70_000, 3, 1 << 20)]
    url = f"{node.url}/v1/objects/{bucket.name}/chunked"
    r = requests.put(url, data=iter(parts))
    assert r.status_code == 200, r.text
    assert requests.get(url).content == b"".join(parts)


def test_partial_uploads_left_by_a_crash_are_reclaimed_at_start(tmp_path):
    tmp = tmp_path / "data" / ".sys" / "tmp"
    tmp.mkdir(parents=True)
    leftover = tmp / "0123456789abcdef0123456789abcdef"
    leftover.write_bytes(b"partial upload of a process that died")
    old = time.time() - 60
    os.utime(leftover, (old, old))
    n = Node(tmp_path / "data", tmp_path / "server.log", serve_argv(workers=1, threads=2))
    try:
        assert not leftover.exists()
    finally:
        n.stop()
