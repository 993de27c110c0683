"""Two apps in one process share nothing: each has its own NodeRuntime (batch ids, look-ahead
threads, peer compression's verdict) and its own storage's fd budget and ShardMemory, so a
shard one app parsed is not remembered by the other, nor by the library's default. In-process
(falcon.testing): the app's state, not its processes, is what is tested."""
import io
import tarfile

import falcon.testing

from getbatch.archive import memory
from getbatch.config import Config
from getbatch.server.app import create_app
from getbatch.server.noderuntime import NodeRuntime
from getbatch.store import open_storage


def _shard():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name in ("a.txt", "b.txt"):
            info = tarfile.TarInfo(name)
            info.size = 5
            t.addfile(info, io.BytesIO(name[0].encode() * 5))
    return buf.getvalue()


def _node(root, name):
    config = Config().replace(node_id=name, data_dir=str(root / name))
    storage = open_storage(config)
    local = storage.backends["ais"]
    local.create_bucket("b")
    shard = _shard()
    local.put("b", "s.tar", io.BytesIO(shard), len(shard))
    runtime = NodeRuntime()
    return falcon.testing.TestClient(create_app(config, storage, runtime=runtime)), local, runtime


def _get_batch(client):
    r = client.simulate_get("/v1/ml/moss/b", json={
        "in": [{"objname": "s.tar", "archpath": "b.txt"}], "strm": True})   # a plain TAR
    assert r.status_code == 200, r.text
    with tarfile.open(fileobj=io.BytesIO(r.content)) as t:
        return [(m.name, t.extractfile(m).read()) for m in t.getmembers()]


def test_two_apps_in_one_process_share_nothing(tmp_path):
    default_before = dict(memory.DEFAULT.stats)
    (a, store_a, run_a), (b, store_b, run_b) = _node(tmp_path, "a"), _node(tmp_path, "b")
    for part in ("batch_ids", "warm_pool", "peer_compression"):
        assert getattr(run_a, part) is not getattr(run_b, part)
    assert store_a.fds is not store_b.fds
    assert store_a.shard_memory is not store_b.shard_memory

    assert _get_batch(a) == [("b/s.tar/b.txt", b"bbbbb")]
    assert len(store_a.shard_memory.parsed) == 1 and store_a.shard_memory.stats["builds"] == 1
    assert len(store_b.shard_memory.parsed) == 0         # a's parsed shard is not b's
    assert _get_batch(b) == [("b/s.tar/b.txt", b"bbbbb")]
    assert store_b.shard_memory.stats["builds"] == 1     # b indexed its own copy
    assert _get_batch(a) and store_a.shard_memory.stats["hits"] == 1
    assert store_b.shard_memory.stats["hits"] == 0
    assert memory.DEFAULT.stats == default_before        # the library's default untouched

    run_a.peer_compression.rest_a_while()
    assert run_a.peer_compression.resting() and not run_b.peer_compression.resting()
    assert run_a.batch_ids.next()[:12] != run_b.batch_ids.next()[:12]   # own random prefixes
