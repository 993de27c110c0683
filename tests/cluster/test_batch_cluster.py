"""Big GetBatch requests on 3 real nodes: 10,000 entries spread over every node, in every output
format and mode, byte for byte and in order; the same through `coloc=1` (307 to the node owning
most entries, followed by the SDK with the same body)."""
import gzip
import io
import json
import random
import tarfile
import threading
import time

import lz4.frame
import pytest
import requests

from aistore.sdk.enums import Colocation
from getbatch.archive import open_writer
from getbatch.cluster.smap import NodeInfo, Smap

from tests.support.nodes import make_client
from tests.archive.tarhelp import make_tar as _tar

N_OBJECTS = 400
N_ENTRIES = 10_000


def _put_all(url, bucket, objs):
    s = requests.Session()
    for name, data in objs.items():
        r = s.put(f"{url}/v1/objects/{bucket}/{name}", data=data, params={"provider": "ais"},
                  timeout=30)
        assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def spread(cluster):
    """N_OBJECTS objects (0-2000 bytes) and a shard on every node, and a 10,000-entry request
    over them: (entries, [(name in archive, bytes)] expected)."""
    client = make_client(cluster.urls[0])
    client.bucket("big").create(exist_ok=True)
    rng = random.Random(3)
    objs = {f"f{i:04d}": rng.randbytes(rng.randint(0, 2000)) for i in range(N_OBJECTS)}
    members = [(f"m{i}.bin", rng.randbytes(rng.randint(0, 3000))) for i in range(20)]
    for k in range(6):
        objs[f"shard{k}.tar"] = _tar(members)
    _put_all(cluster.urls[1], "big", objs)
    entries, want = [], []
    for _ in range(N_ENTRIES):
        if rng.random() < 0.1:
            shard, (m, data) = f"shard{rng.randrange(6)}.tar", rng.choice(members)
            entries.append({"objname": shard, "archpath": m})
            want.append((f"big/{shard}/{m}", data))
        else:
            n = rng.choice(sorted(o for o in objs if not o.endswith(".tar")))
            entries.append({"objname": n})
            want.append((f"big/{n}", objs[n]))
    smap = Smap(1, [NodeInfo(n.id, n.url) for n in cluster.nodes], cluster.nodes[0].id)
    owners = {smap.owner("ais", "big", e["objname"]).id for e in entries}
    assert len(owners) == 3   # every node owns some
    return entries, want


def _expected(fmt, want):
    buf = io.BytesIO()
    with open_writer(fmt, buf) as w:
        for name, data in want:
            w.add(name, data)
    return buf.getvalue()


def _split(resp):
    boundary = resp.headers["Content-Type"].split("boundary=")[1].encode()
    parts = resp.content.split(b"--" + boundary)
    meta = json.loads(parts[1].split(b"\r\n\r\n", 1)[1])
    return meta, parts[2].split(b"\r\n\r\n", 1)[1][:-2]


@pytest.mark.parametrize("strm", [True, False])
@pytest.mark.parametrize("fmt", ["tar", "tgz", "tar.lz4", "zip"])
def test_ten_thousand_spread_byte_for_byte(cluster, spread, fmt, strm):
    entries, want = spread
    r = requests.get(f"{cluster.urls[0]}/v1/ml/moss/big", timeout=120,
                     json={"in": entries, "mime": "." + fmt, "strm": strm})
    assert r.status_code == 200, r.text[:500]
    if strm:
        body = r.content
    else:
        meta, body = _split(r)
        assert [o["size"] for o in meta["out"]] == [len(d) for _, d in want]
        assert all("err_msg" not in o for o in meta["out"])
    if fmt == "tar":
        assert int(r.headers["Content-Length"]) == len(r.content)
    assert body == _expected(fmt, want)


@pytest.mark.parametrize("strm", [True, False])
def test_coloc_redirects_to_the_main_owner(cluster, spread, strm):
    entries, want = spread
    names = [e["objname"] for e in entries if "archpath" not in e][:3000]
    smap = Smap(1, [NodeInfo(n.id, n.url) for n in cluster.nodes], cluster.nodes[0].id)
    counts = {}
    for n in names:
        o = smap.owner("ais", "big", n).id
        counts[o] = counts.get(o, 0) + 1
    best = max(counts, key=counts.get)
    entry = next(n for n in cluster.nodes if n.id != best)
    r = requests.get(f"{entry.url}/v1/ml/moss/big", params={"coloc": "1"}, allow_redirects=False,
                     json={"in": [{"objname": n} for n in names]}, timeout=60)
    assert r.status_code == 307
    target = next(n for n in cluster.nodes if n.id == best)
    assert r.headers["Location"].startswith(f"{target.url}/v1/ml/moss/big?")
    assert "coloc=0" in r.headers["Location"]
    # the unmodified SDK follows the 307 with the same body
    client = make_client(entry.url)
    batch = client.batch(names, bucket=client.bucket("big"), streaming_get=strm,
                         colocation=Colocation.TARGET_AWARE)
    got = list(batch.get())
    objs = dict(want)
    assert [i.obj_name for i, _ in got] == names
    assert [d for _, d in got] == [objs[f"big/{n}"] for n in names]
    # a request with credentials stays too: a client following the 307 would drop them
    r = requests.get(f"{entry.url}/v1/ml/moss/big", params={"coloc": "1"}, allow_redirects=False,
                     headers={"Authorization": "Bearer x"}, timeout=60,
                     json={"in": [{"objname": n} for n in names[:10]], "strm": True})
    assert r.status_code == 200
    # coloc=0 stays where it landed
    r = requests.get(f"{entry.url}/v1/ml/moss/big", params={"coloc": "0"}, allow_redirects=False,
                     json={"in": [{"objname": n} for n in names[:10]], "strm": True}, timeout=60)
    assert r.status_code == 200


def test_gzip_and_lz4_decode(cluster, spread):
    """The compressed formats hold the same TAR (a check independent of our own writer)."""
    entries, want = spread
    for fmt, decode in ((".tgz", gzip.decompress), (".tar.lz4", lz4.frame.decompress)):
        r = requests.get(f"{cluster.urls[2]}/v1/ml/moss/big", timeout=120,
                         json={"in": entries[:2000], "mime": fmt, "strm": True})
        with tarfile.open(fileobj=io.BytesIO(decode(r.content))) as tf:
            got = [(m.name, tf.extractfile(m).read()) for m in tf]
        assert got == want[:2000]


def test_nodes_serving_each_others_batches_do_not_wait_on_each_other(make_cluster):
    """One request thread per node, and a batch landing on every node at once: each thread
    waits on the other two nodes, whose peer parts run in threads of their own."""
    c = make_cluster(n=3, workers=1, threads=1)
    s = requests.Session()
    assert s.post(f"{c.urls[0]}/v1/buckets/dl", json={"action": "create-bck"},
                  params={"provider": "ais"}, timeout=10).status_code == 200
    objs = {f"x{i}": bytes([i]) * (300 << 10) for i in range(24)}   # more than sockets hold
    _put_all(c.urls[0], "dl", objs)
    body = {"in": [{"objname": n} for n in objs] * 4, "strm": True}
    want = _expected("tar", [(f"dl/{n}", objs[n]) for n in objs] * 4)
    results = []

    def run(url):
        r = requests.get(f"{url}/v1/ml/moss/dl", json=body, params={"max_wait": "120s"},
                         timeout=240)
        results.append(r.content == want)

    threads = [threading.Thread(target=run, args=(u,)) for u in c.urls * 2]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 6
    assert time.monotonic() - t0 < 100   # no one waited for max_wait (a loaded machine has room)


def _wait_setting(urls, key, value):
    deadline = time.monotonic() + 30
    while True:
        got = [requests.get(f"{u}/v1/config", timeout=10).json()["settings"][key]["value"]
               for u in urls]
        if got == [value] * len(urls):
            return
        assert time.monotonic() < deadline, got
        time.sleep(0.1)


@pytest.mark.parametrize("mode", ["lz4", "snappy", "auto"])
def test_compressed_peer_streams_same_bytes(cluster, spread, mode):
    """peer_compression: owners send their items in compressed blocks; the batch is the
    same, byte for byte (auto, told of a 10 Mbit/s link, compresses too)."""
    entries, want = spread
    r = requests.put(f"{cluster.urls[0]}/v1/config", timeout=10, json={
        "action": "set-config", "value": {"peer_compression": mode, "peer_link_mbit": 10}})
    assert r.status_code == 200, r.text
    try:
        _wait_setting(cluster.urls, "peer_compression", mode)
        for url in cluster.urls[:2]:
            r = requests.get(f"{url}/v1/ml/moss/big", timeout=120,
                             json={"in": entries, "strm": True})
            assert r.status_code == 200, r.text[:500]
            assert r.content == _expected("tar", want)
    finally:
        r = requests.put(f"{cluster.urls[0]}/v1/config", timeout=10,
                         json={"action": "reset-config", "value": None})
        assert r.status_code == 200, r.text
    _wait_setting(cluster.urls, "peer_compression", "never")


def test_compressed_peer_answer_on_the_wire(cluster, spread):
    """An owner asked by a DT that reads compressed blocks answers in chunks of one block
    each, compressible items in lz4 blocks, adding up to the plain answer's length."""
    from getbatch.cluster import peerwire, peerzip
    from getbatch.cluster.peers import SECRET_HEADER
    data = b"the same words again and again " * 20000
    _put_all(cluster.urls[0], "big", {"z.txt": data})
    smap = Smap(1, [NodeInfo(n.id, n.url) for n in cluster.nodes], cluster.nodes[0].id)
    owner = smap.owner("ais", "big", "z.txt").url
    r = requests.put(f"{owner}/v1/config", timeout=10, json={
        "action": "set-config", "value": {"peer_compression": "lz4"}})
    assert r.status_code == 200, r.text
    try:
        _wait_setting([owner], "peer_compression", "lz4")
        headers = {SECRET_HEADER: cluster.secret(), peerzip.ACCEPT: "lz4, snappy"}
        body = {"in": [{"objname": "z.txt", "bucket": "big", "provider": "ais"}]}
        plain = requests.post(f"{owner}/v1/_peer/batch", json=body, timeout=30,
                              headers={SECRET_HEADER: cluster.secret()})
        r = requests.post(f"{owner}/v1/_peer/batch", json=body, headers=headers, stream=True,
                          timeout=30)
        assert r.status_code == 200 and r.headers["Transfer-Encoding"] == "chunked"
        blocks = list(r.raw.read_chunked())
        codecs = [peerzip.HEAD.unpack_from(b)[0] for b in blocks]
        got = b"".join(bytes(peerzip.unpack(b)) for b in blocks)
        # the same answer but for the plan's batch id: the same length, the same item frames
        assert len(got) == len(plain.content) == int(r.headers[peerzip.RAW_LENGTH])
        skip = peerwire.PLAN_HEAD + peerwire.plan_length(got[:peerwire.PLAN_HEAD])
        assert got[skip:] == plain.content[skip:] and data in got
        assert peerzip.LZ4 in codecs and sum(map(len, blocks)) < len(got) // 10
    finally:
        requests.put(f"{cluster.urls[0]}/v1/config", timeout=10,
                     json={"action": "reset-config", "value": None})
    _wait_setting(cluster.urls, "peer_compression", "never")
