"""Epoch plans on a real node: register a plan, fetch every step of every rank as GetBatch
output (streaming TAR, multipart for the SDK's decoder), and the 4xx of bad requests."""
import io
import tarfile

import pytest
import requests

from aistore.sdk.batch.multipart.multipart_decoder import MultipartDecoder
from aistore.sdk.batch.types import MossResp

from tests.archive.tarhelp import make_tar

SHARDS, PER_SHARD = 4, 5


def _content(s, k, ext):
    return f"{s}:{k}:{ext}".encode() * (k + 1)


@pytest.fixture
def data(bucket):
    """SHARDS shards of PER_SHARD samples (x.jpg + x.cls)."""
    for s in range(SHARDS):
        members = []
        for k in range(PER_SHARD):
            members += [(f"{s}-{k}.cls", _content(s, k, "cls")),
                        (f"{s}-{k}.jpg", _content(s, k, "jpg"))]
        bucket.object(f"train/shard-{s:03d}.tar").get_writer().put_content(make_tar(members))
    return bucket


def create(url, **doc):
    r = requests.post(url + "/v1/ml/epochs", json=doc, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def step(url, strm=True, **doc):
    return requests.get(url + "/v1/ml/moss", json=dict(doc, strm=strm), timeout=30)


def tar_entries(data):
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tf:
        return [(m.name, tf.extractfile(m).read()) for m in tf]


def test_plan_steps_hold_every_sample_once(node, data):
    rec = create(node.url, bucket=data.name, shards={"template": "train/shard-{000..003}.tar"},
                 group="sample", seed=7, world_size=3, batch_size=2)
    assert rec["samples"] == SHARDS * PER_SHARD and rec["members"] == 2 * rec["samples"]
    assert rec["steps"] == 4    # 20 samples, 6 a global step: 3 full steps and a remainder
    assert requests.get(f"{node.url}/v1/ml/epochs/{rec['id']}").json() == rec
    assert rec["id"] in [p["id"] for p in requests.get(node.url + "/v1/ml/epochs").json()["plans"]]
    orders = []
    for epoch in (0, 1):
        seen = []
        for rank in range(3):
            for k in range(rec["steps"]):
                r = step(node.url, plan=rec["id"], epoch=epoch, rank=rank, step=k, onob=True)
                if (k, rank) == (3, 2):   # the last 2 samples went to ranks 0 and 1
                    assert r.status_code == 416 and "is empty" in r.text
                    continue
                assert r.status_code == 200, r.text
                entries = tar_entries(r.content)
                assert len(entries) % 2 == 0 and len(entries) <= 4
                for (cls_name, cls), (jpg_name, jpg) in zip(entries[::2], entries[1::2]):
                    shard, member = cls_name.rsplit("/", 1)
                    s, k2 = map(int, member[:-4].split("-"))
                    assert jpg_name == f"{shard}/{s}-{k2}.jpg"
                    assert (cls, jpg) == (_content(s, k2, "cls"), _content(s, k2, "jpg"))
                    seen.append((s, k2))
            r = step(node.url, plan=rec["id"], epoch=epoch, rank=rank, step=rec["steps"])
            assert r.status_code == 416, r.text
        assert sorted(seen) == [(s, k) for s in range(SHARDS) for k in range(PER_SHARD)]
        orders.append(seen)
    assert orders[0] != orders[1]
    # the same step again, the rest of it from its 3rd entry, and in multipart for the SDK
    one = dict(plan=rec["id"], epoch=1, rank=2, step=1)
    full = tar_entries(step(node.url, **one).content)
    assert tar_entries(step(node.url, **one).content) == full
    assert tar_entries(step(node.url, first=2, **one).content) == full[2:]
    r = step(node.url, strm=False, **one)
    parts = MultipartDecoder().decode(r)
    meta = MossResp.model_validate_json(next(parts)[1].decode())
    assert [(o.bucket, f"{o.obj_name}/{o.archpath}") for o in meta.out] == [
        (data.name, n.split("/", 1)[1]) for n, _ in full]
    assert tar_entries(next(parts)[1]) == full


def test_elastic_world_size_and_shard_shuffle(node, data):
    rec = create(node.url, bucket=data.name, shards={"prefix": "train/"}, seed=1,
                 world_size=2, batch_size=3, shuffle={"mode": "shard", "window": 5})
    assert rec["samples"] == SHARDS * PER_SHARD * 2 and rec["spec"]["group"] == "member"
    names = []
    for k in range(2):       # two steps on 2 ranks: 12 samples
        for rank in range(2):
            names += [n for n, _ in tar_entries(step(node.url, plan=rec["id"], epoch=0,
                                                     rank=rank, step=k).content)]
    for k in range(10):      # the rest on 3 ranks, from sample 12
        for rank in range(3):
            r = step(node.url, plan=rec["id"], epoch=0, rank=rank, step=k, world_size=3,
                     offset=12)
            if r.status_code == 416:
                continue
            names += [n for n, _ in tar_entries(r.content)]
    assert len(names) == len(set(names)) == rec["samples"]


@pytest.mark.parametrize("doc, status, text", [
    ({"plan": "ep-nosuchplan", "epoch": 0, "rank": 0, "step": 0}, 404, "does not exist"),
    ({"plan": "PLAN", "epoch": 0, "rank": 5, "step": 0}, 400, "rank"),
    ({"plan": "PLAN", "epoch": -1, "rank": 0, "step": 0}, 400, "epoch"),
    ({"plan": "PLAN", "epoch": 0, "rank": 0, "step": 0, "bogus": 1}, 400, "bogus"),
    ({"plan": "PLAN", "epoch": 0, "rank": 0, "step": 0, "first": 99}, 400, "first"),
    ({"plan": "PLAN", "epoch": 0, "rank": 0, "step": 99}, 416, "past the end"),
])
def test_bad_epoch_requests(node, data, doc, status, text):
    rec = create(node.url, bucket=data.name, shards={"prefix": "train/"}, batch_size=4)
    if doc["plan"] == "PLAN":
        doc = dict(doc, plan=rec["id"])
    r = step(node.url, **doc)
    assert r.status_code == status and text in r.text, r.text


@pytest.mark.parametrize("doc, status", [
    ({"shards": {"prefix": "train/"}}, 400),                       # no batch size
    ({"shards": {"names": ["train/none.tar"]}, "batch_size": 1}, 404),
    ({"shards": {"prefix": "nothing-here/"}, "batch_size": 1}, 404),
])
def test_bad_plans(node, data, doc, status):
    r = requests.post(node.url + "/v1/ml/epochs", json=dict(doc, bucket=data.name), timeout=30)
    assert r.status_code == status, r.text
    r = requests.post(node.url + "/v1/ml/epochs", data=b"{nope", timeout=30)
    assert r.status_code == 400
    assert requests.get(node.url + "/v1/ml/epochs/ep-missing").status_code == 404


@pytest.mark.parametrize("mime", [".tar", ".tgz", ".zip"])
def test_cksum_per_entry(node, data, mime):
    """Each entry carries its XXH64: a PAX record in TAR, an extra field in ZIP; a plain
    .tar still has an exact Content-Length."""
    import zipfile

    import xxhash

    from getbatch.archive.cksum import PAX_KEY, zip_cksum_of
    rec = create(node.url, bucket=data.name, shards={"prefix": "train/"}, batch_size=6)
    r = step(node.url, plan=rec["id"], epoch=0, rank=0, step=0, mime=mime, cksum=True)
    assert r.status_code == 200, r.text
    got = {}
    if mime == ".zip":
        with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
            for info in zf.infolist():
                got[info.filename] = (zip_cksum_of(info.extra), zf.read(info))
    else:
        with tarfile.open(fileobj=io.BytesIO(r.content), mode="r|*") as tf:
            for m in tf:
                got[m.name] = (m.pax_headers.get(PAX_KEY), tf.extractfile(m).read())
    if mime == ".tar":
        assert int(r.headers["Content-Length"]) == len(r.content)
    assert len(got) == 6
    for name, (digest, content) in got.items():
        assert digest == xxhash.xxh64_hexdigest(content) and content, name
    # an ordinary GetBatch may ask for them too, for objects and for archived files
    body = {"in": [{"objname": "train/shard-000.tar", "archpath": "0-1.jpg"},
                   {"objname": "train/shard-001.tar"}], "strm": True, "cksum": True}
    r = requests.get(f"{node.url}/v1/ml/moss/{data.name}", json=body, timeout=30)
    with tarfile.open(fileobj=io.BytesIO(r.content), mode="r|") as tf:
        sums = [(m.pax_headers[PAX_KEY], xxhash.xxh64_hexdigest(tf.extractfile(m).read()))
                for m in tf]
    assert len(sums) == 2 and all(a == b for a, b in sums)
    assert sums[1][0] == data.object("train/shard-001.tar").head().checksum_value


def test_cli_epoch_create_show_list_and_get(node, data, tmp_path):
    import json
    import os
    import subprocess
    import sys

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "getbatch.cli", *args, "--url", node.url],
                              capture_output=True, text=True, timeout=60, cwd=tmp_path,
                              env=dict(os.environ, AIS_ENDPOINT=""))
    r = cli("epoch", "create", "--bucket", data.name, "--template",
            "train/shard-{000..003}.tar", "--ext", ".jpg", "--batch-size", "3", "--seed", "2",
            "--world-size", "2", "--shuffle", "shard", "--window", "4")
    assert r.returncode == 0, r.stderr
    pid = r.stdout.strip()
    assert pid.startswith("ep-") and "20 samples (20 files) in 4 shards, 4 steps" in r.stderr
    shown = json.loads(cli("epoch", "show", pid).stdout)
    assert shown["spec"]["shuffle"] == {"mode": "shard", "window": 4}
    assert shown["spec"]["members"] == {"ext": [".jpg"]}
    listed = cli("epoch", "list").stdout.splitlines()
    assert listed[0].split()[:3] == ["ID", "BUCKET", "SHARDS"]
    assert any(line.startswith(pid) for line in listed[1:])
    r = cli("get", "--epoch", pid, "--rank", "1", "--step", "2", "-o", "b.tar")
    assert r.returncode == 0, r.stderr
    got = tar_entries(open(tmp_path / "b.tar", "rb").read())
    want = tar_entries(step(node.url, plan=pid, epoch=0, rank=1, step=2).content)
    assert got == want and len(got) == 3 and all(n.endswith(".jpg") for n, _ in got)
    r = cli("get", "--epoch", pid, "--step", "99", "-o", "c.tar")
    assert r.returncode == 1 and "416" in r.stderr and not os.path.exists(tmp_path / "c.tar")
    r = cli("epoch", "show", "ep-nothere")
    assert r.returncode == 1 and "404" in r.stderr


def test_cksum_in_multipart_metadata(node, data):
    """The SDK's decoder takes metadata whose entries carry xxhash64 (an extra field)."""
    import xxhash
    rec = create(node.url, bucket=data.name, shards={"prefix": "train/"}, batch_size=4)
    r = step(node.url, strm=False, plan=rec["id"], epoch=0, rank=0, step=1, cksum=True)
    assert r.status_code == 200, r.text
    parts = MultipartDecoder().decode(r)
    raw = next(parts)[1]
    meta = MossResp.model_validate_json(raw.decode())
    import json
    sums = [o["xxhash64"] for o in json.loads(raw)["out"]]
    entries = tar_entries(next(parts)[1])
    assert len(meta.out) == len(entries) == len(sums) == 4
    assert sums == [xxhash.xxh64_hexdigest(d) for _, d in entries]
