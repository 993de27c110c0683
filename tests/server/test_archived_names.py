"""`shard.zip/x.wav` named as one object means the same file in object GET, HEAD and GetBatch."""
import pytest
import requests

from aistore.sdk.errors import AISError, ErrObjNotFound

from .shards import EXT, shard_bytes

FILES = [("x.wav", b"RIFF" + bytes(range(256)) * 3), ("sub/y.txt", b"hello"), ("./z.bin", b"zz")]


@pytest.mark.parametrize("fmt", list(EXT))
def test_get_head_and_batch_agree(client, bucket, fmt):
    shard = "d/s-000" + EXT[fmt]
    bucket.object(shard).get_writer().put_content(shard_bytes(fmt, FILES))
    for member, data in FILES:
        name = f"{shard}/{member.removeprefix('./')}"
        obj = bucket.object(name)
        assert obj.get_reader().read_all() == data
        assert obj.head().size == len(data)
        (info, got), = list(client.batch([name], bucket=bucket).get())
        assert got == data


def test_plain_object_wins_and_misses_are_404(bucket, node):
    bucket.object("a.tar").get_writer().put_content(shard_bytes("tar", FILES))
    # an object whose own name passes through a shard-like prefix is itself, not a member
    bucket.object("b.zip/x.wav").get_writer().put_content(b"plain object")
    assert bucket.object("b.zip/x.wav").get_reader().read_all() == b"plain object"
    with pytest.raises(ErrObjNotFound):
        bucket.object("a.tar/missing.wav").get_reader().read_all()
    with pytest.raises(AISError) as e:
        bucket.object("a.tar/missing.wav").head()
    assert e.value.status_code == 404
    # a Range on an archived file is refused clearly (416), never answered with wrong bytes
    r = requests.get(f"{node.url}/v1/objects/{bucket.name}/a.tar/x.wav",
                     headers={"Range": "bytes=0-3"})
    assert r.status_code == 416 and "inside a shard" in r.json()["message"]


def test_not_an_archive_is_400(bucket, node):
    bucket.object("c.tar").get_writer().put_content(b"not a tar at all" * 40)
    r = requests.get(f"{node.url}/v1/objects/{bucket.name}/c.tar/x.wav")
    assert r.status_code == 400 and "c.tar" in r.json()["message"]


def test_head_with_archpath_is_what_get_would_send(bucket, node):
    bucket.object("h.tar").get_writer().put_content(shard_bytes("tar", FILES))
    url = f"{node.url}/v1/objects/{bucket.name}/h.tar"
    assert "Ais-Checksum-Value" in requests.head(url).headers
    for member, data in FILES:
        path = member.removeprefix("./")
        r = requests.head(url, params={"archpath": path})
        assert r.status_code == 200 and int(r.headers["Content-Length"]) == len(data)
        assert "Ais-Checksum-Value" not in r.headers   # the shard's checksum is not the file's
        assert requests.get(url, params={"archpath": path}).content == data
    r = requests.head(url, params={"archpath": "missing.wav"})
    assert r.status_code == 404
    assert "missing.wav in ais://" in r.headers["Hdr-Error"]
    assert requests.head(url, params={"archpath": "a/../b"}).status_code == 400
