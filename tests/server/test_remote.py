"""aws:// buckets end to end: a gunicorn node in front of a moto S3 server, driven by the real
SDK (`client.bucket(name, provider="aws")`) and requests."""
import os

import pytest
import requests
from aistore.sdk.errors import AISError, ErrObjNotFound

from getbatch.store.objcache import ObjectCache

from ..remote_servers import boto3_client, free_port, S3_ENV
from tests.support.nodes import Node, bucket_path, make_client, serve_argv
from .test_moss import make_tar, moss, split_multipart, tar_members

AWS = pytest.mark.parametrize("bucket", ["aws"], indirect=True)


@AWS
def test_a_node_with_only_the_aws_environment_reaches_s3(node, client, bucket, moto):
    """The shared node got AWS_ENDPOINT_URL, keys and region, and no getbatch setting."""
    s3 = boto3_client(moto)
    s3.put_object(Bucket=bucket.name, Key="from-boto3", Body=b"hello")
    bucket.head()
    assert bucket.object("from-boto3").get_reader().read_all() == b"hello"
    bucket.object("from-sdk").get_writer().put_content(b"written through")
    assert s3.get_object(Bucket=bucket.name, Key="from-sdk")["Body"].read() == b"written through"
    assert sorted(e.name for e in bucket.list_all_objects()) == ["from-boto3", "from-sdk"]


@AWS
def test_object_api_on_s3(client, bucket, moto):
    s3 = boto3_client(moto)
    data = os.urandom(200_000)
    obj = bucket.object("d/o.bin")
    obj.get_writer().put_content(data)
    assert obj.get_reader().read_all() == data
    assert obj.get_reader(byte_range="bytes=1000-1999").read_all() == data[1000:2000]
    props = obj.head()
    assert props.size == len(data)
    s3.put_object(Bucket=bucket.name, Key="d/o.bin", Body=b"changed behind our back")
    assert obj.get_reader().read_all() == b"changed behind our back"
    obj.delete()
    with pytest.raises(ErrObjNotFound):
        obj.get_reader().read_all()
    with pytest.raises(AISError) as ei:
        obj.get_writer().append_content(b"x")
    assert ei.value.status_code == 400 and "append is not supported on aws://" in str(ei.value)


@AWS
def test_listing_pages_are_s3_pages(client, bucket, moto):
    s3 = boto3_client(moto)
    names = [f"p/{i:02d}" for i in range(7)]
    for n in names:
        s3.put_object(Bucket=bucket.name, Key=n, Body=n.encode())
    got, token = [], ""
    while True:
        page = bucket.list_objects(page_size=3, continuation_token=token)
        assert len(page.entries) <= 3
        got += [(e.name, e.size) for e in page.entries]
        token = page.continuation_token
        if not token:
            break
    assert got == [(n, 4) for n in names]


@AWS
def test_changed_and_deleted_remote_objects_in_a_batch(node, client, bucket, moto):
    s3 = boto3_client(moto)
    s3.put_object(Bucket=bucket.name, Key="a", Body=b"first")
    s3.put_object(Bucket=bucket.name, Key="b", Body=b"bee")
    assert [d for _, d in client.batch(["a", "b"], bucket=bucket).get()] == [b"first", b"bee"]
    s3.put_object(Bucket=bucket.name, Key="a", Body=b"second, longer")
    s3.delete_object(Bucket=bucket.name, Key="b")
    got = list(client.batch(["a", "b", "a"], bucket=bucket, streaming_get=False).get())
    assert [d for _, d in got] == [b"second, longer", b"", b"second, longer"]
    assert got[1][0].err_msg and f"aws://{bucket.name}/b does not exist" in got[1][0].err_msg
    r = moss(node.url, {"in": [{"objname": "b"}], "strm": True}, bucket_path(bucket))
    assert r.status_code == 404 and f"aws://{bucket.name}/b does not exist" in r.json()["message"]


@AWS
def test_cross_provider_batch_keeps_request_order(node, client, bucket, moto):
    local = client.bucket(bucket.name + "-local")
    local.create(exist_ok=True)
    try:
        s3 = boto3_client(moto)
        want = []
        for i in range(40):
            name = f"o{i:02d}"
            data = os.urandom(i * 97)
            if i % 3:
                s3.put_object(Bucket=bucket.name, Key=name, Body=data)
                want.append(("aws", bucket.name, name, data))
            else:
                local.object(name).get_writer().put_content(data)
                want.append(("ais", local.name, name, data))
        shard = make_tar([("x.wav", b"wav"), ("y.txt", b"why")])
        s3.put_object(Bucket=bucket.name, Key="s.tar", Body=shard)
        body = {"in": [{"objname": n, "bucket": b, "provider": p} for p, b, n, _ in want]
                + [{"objname": "s.tar", "bucket": bucket.name, "provider": "aws", "archpath": "y.txt"}],
                "strm": False}
        meta, arch = split_multipart(moss(node.url, body))
        assert tar_members(arch) == [(f"{b}/{n}", d) for _, b, n, d in want] + [
            (f"{bucket.name}/s.tar/y.txt", b"why")]
        assert [o["provider"] for o in meta["out"]] == [p for p, *_ in want] + ["aws"]
    finally:
        local.delete(missing_ok=True)


@AWS
def test_members_of_a_big_remote_tar_are_read_with_ranged_gets(node, client, bucket, moto):
    s3 = boto3_client(moto)
    members = [(f"m{i:03d}", os.urandom(1 << 20)) for i in range(40)]   # above whole_below
    s3.put_object(Bucket=bucket.name, Key="big.tar", Body=make_tar(members))
    want = [members[i] for i in (39, 0, 31, 7)]
    batch = client.batch(bucket=bucket, streaming_get=False)
    for n, _ in want:
        batch.add("big.tar", archpath=n)
    assert [d for _, d in batch.get()] == [d for _, d in want]
    cache = ObjectCache(os.path.join(node.data_dir, ".sys", "remote-cache", "aws"), 1 << 30)
    head = s3.head_object(Bucket=bucket.name, Key="big.tar")
    assert cache.hint("aws", bucket.name, "big.tar") is None    # never fetched whole
    assert cache.lookup("aws", bucket.name, "big.tar", head["ETag"], head["ContentLength"]) is None


def test_remote_errors_reach_the_sdk(tmp_path):
    """Unreachable S3 is a 503 naming the endpoint, with a Retry-After."""
    dead = f"http://127.0.0.1:{free_port()}"
    n = Node(tmp_path / "data", tmp_path / "server.log", serve_argv(workers=1, threads=2),
             env=dict(S3_ENV, AWS_ENDPOINT_URL=dead))
    try:
        r = requests.head(f"{n.url}/v1/buckets/any?provider=aws")
        assert r.status_code == 503 and dead in r.headers["Hdr-Error"]
        assert r.headers["Retry-After"] == "1"   # not urllib3's 6-to-48 s backoff
        r = moss(n.url, {"in": [{"objname": "x"}]}, "/any?provider=aws")
        assert r.status_code == 503 and dead in r.json()["message"]
        assert r.headers["Retry-After"] == "1"
    finally:
        n.stop()


@pytest.mark.parametrize("env", [dict(S3_ENV, AWS_ENDPOINT_URL="dead"),
                                 {"AWS_EC2_METADATA_DISABLED": "true",
                                  "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
                                  "AWS_CONFIG_FILE": "/nonexistent", "AWS_DEFAULT_REGION": "us-east-1"}],
                         ids=["unreachable", "no-credentials"])
def test_listing_every_provider_needs_no_remote_store(tmp_path, env):
    """list_buckets(provider="") lists the ais:// buckets when S3 cannot be reached or this
    node has no AWS credentials (it was a 403 "access to aws:// denied"); asked for
    aws:// buckets by name, the node still says why it cannot list them."""
    env = dict(env)
    if env.get("AWS_ENDPOINT_URL") == "dead":
        env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{free_port()}"
    n = Node(tmp_path / "data", tmp_path / "server.log", serve_argv(workers=1, threads=2), env=env)
    try:
        c = make_client(n.url)
        c.bucket("local").create()
        assert [(b.name, b.provider) for b in c.cluster().list_buckets(provider="")] == [
            ("local", "ais")]
        r = requests.get(f"{n.url}/v1/buckets", params={"provider": "aws"}, timeout=30)
        assert r.status_code in (403, 503), r.text
    finally:
        n.stop()
