"""S3 buckets on a cluster: every node reaches the same S3 store (moto), GetBatch entries of an
`aws` bucket are spread over the nodes by HRW like `ais` ones, and a batch mixing `ais` and `aws`
entries comes back complete and in request order."""
import io
import os
import tarfile

import requests

from tests.remote_servers import boto3_client, s3_env
from tests.support.nodes import make_client


def test_batch_mixing_s3_and_local_entries_on_three_nodes(make_cluster, moto):
    s3 = boto3_client(moto)
    s3.create_bucket(Bucket="rc-remote")
    remote = {f"r/{i:03d}.bin": f"remote {i} ".encode() * (i + 1) for i in range(60)}
    for name, data in remote.items():
        s3.put_object(Bucket="rc-remote", Key=name, Body=data)
    c = make_cluster(3, env=s3_env(moto))
    client = make_client(c.urls[0])
    local = client.bucket("rc-local")
    local.create(exist_ok=True)
    mine = {f"l/{i:03d}.bin": f"local {i} ".encode() * (i + 2) for i in range(60)}
    for name, data in mine.items():
        local.object(name).get_writer().put_content(data)

    order = [(p, n) for pair in zip(sorted(remote), sorted(mine)) for p, n in
             (("aws", pair[0]), ("ais", pair[1]))]
    expected = [(remote if p == "aws" else mine)[n] for p, n in order]
    body = {"in": [{"objname": n, "bucket": "rc-remote" if p == "aws" else "rc-local",
                    "provider": p} for p, n in order], "mime": ".tar", "strm": True}
    for k, url in enumerate(c.urls):   # each node as the DT
        r = requests.get(url + "/v1/ml/moss", json=body, timeout=60)
        assert r.status_code == 200, r.text
        with tarfile.open(fileobj=io.BytesIO(r.content)) as tf:
            got = [tf.extractfile(m).read() for m in tf.getmembers()]
        assert got == expected
        if k == 0:
            # only node 0 was asked, yet every node fetched (and cached) its HRW share of
            # the S3 objects: the remote reads were spread, not all made by the DT
            cached = [sum(len(files) for _, _, files in
                          os.walk(os.path.join(n.data_dir, ".sys", "remote-cache", "aws")))
                      for n in c.nodes]
            assert all(n > 0 for n in cached), cached
    # the SDK through a non-DT node sees the same bytes of one S3 object
    obj = client.bucket("rc-remote", provider="aws").object("r/007.bin")
    assert obj.get_reader().read_all() == remote["r/007.bin"]
