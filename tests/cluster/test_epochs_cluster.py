"""Epoch plans on 3 real nodes: a plan made on one node is served alike by every node (each
has a copy of the dataset, checked against the digest in etcd), and the loader's fetcher
resumes a step whose node is SIGKILLed mid-stream, from the first missing entry, on another
node (copies=2): no sample lost or repeated."""
import os

import requests

from getbatch.loader.fetch import Fetcher
from getbatch.loader.plans import create_plan, describe_plan
from tests.archive.tarhelp import make_tar
from tests.server.test_epochs import step, tar_entries

# a step of 25 MiB: well past what loopback socket buffers hold (up to ~10 MiB), so a kill
# after the first entry always cuts the stream
SHARDS, PER_SHARD, SIZE = 3, 40, 256 << 10


def test_plan_served_alike_and_resumed_after_a_kill(make_cluster):
    c = make_cluster(3)
    urls = c.urls
    s = requests.Session()
    assert s.post(f"{urls[0]}/v1/buckets/ep", json={"action": "create-bck"},
                  timeout=30).status_code == 200
    r = s.patch(f"{urls[0]}/v1/buckets/ep", timeout=30, json={
        "action": "set-bprops", "value": {"mirror": {"enabled": True, "copies": 2}}})
    assert r.status_code == 200, r.text
    for i in range(SHARDS):
        members = [(f"{i}-{k:03d}.bin", os.urandom(SIZE)) for k in range(PER_SHARD)]
        r = s.put(f"{urls[i % 3]}/v1/objects/ep/d/shard-{i}.tar", data=make_tar(members),
                  timeout=60)
        assert r.status_code == 200, r.text
    rec = create_plan(urls[0], bucket="ep", shards={"template": "d/shard-{0..2}.tar"},
                      seed=11, world_size=1, batch_size=100)
    assert rec["samples"] == SHARDS * PER_SHARD
    assert all(describe_plan(u, rec["id"]) == rec for u in urls)
    one = dict(plan=rec["id"], epoch=4, rank=0, step=0)
    want = tar_entries(step(urls[0], **one).content)
    assert len(want) == 100

    class KillingFetcher(Fetcher):
        """Kills node 0 (the node the step is asked of first) after the first entry."""
        def _check(self, name, data, pax):
            super()._check(name, data, pax)
            if c.nodes[0].proc.poll() is None:
                c.kill(0)

    f = KillingFetcher(urls, attempts=8)
    got = f.step(rec["id"], 4, 0, 0)
    assert f.resumes >= 1
    assert got == want
    # node 2 too serves the step alike, from the copy of the dataset node 0 pushed when it
    # made the plan (a listing while node 0 is still in the map would miss its objects)
    assert tar_entries(step(urls[2], **one).content) == want
