"""Lhotse and aistore.pytorch against a real node, byte for byte (the `[ml]` extra:
`pip install -e '.[ml]'`, torch's CPU build from the local wheel)."""
import io
import os

import pytest

torch = pytest.importorskip("torch", reason="needs the [ml] extra: pip install -e '.[ml]'")
lhotse = pytest.importorskip("lhotse", reason="needs the [ml] extra: pip install -e '.[ml]'")
sf = pytest.importorskip("soundfile", reason="needs the [ml] extra: pip install -e '.[ml]'")

import numpy as np  # noqa: E402
import requests  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from aistore.pytorch import (AISIterDataset, AISMapDataset, AISMultiShardStream,  # noqa: E402
                             AISShardReader)
from aistore.pytorch.batch_iter_dataset import AISBatchIterDataset  # noqa: E402
from aistore.pytorch.parallel_map_dataset import AISParallelMapDataset  # noqa: E402
from aistore.sdk import DataShard  # noqa: E402
from lhotse import CutSet, MonoCut, Recording  # noqa: E402
from lhotse.ais import AISBatchLoader  # noqa: E402
from lhotse.audio import AudioSource  # noqa: E402
from lhotse.dataset import AudioSamples, SimpleCutSampler  # noqa: E402

from tests.support.nodes import Node, make_client, serve_argv  # noqa: E402
from .shards import shard_bytes  # noqa: E402

RATE = 8000
SHARDS = {"ml/d-000.tar": "tar", "ml/d-001.tgz": "tgz", "ml/d-002.zip": "zip"}


def wav(seed, n):
    samples = np.random.default_rng(seed).integers(-20000, 20000, n, dtype=np.int16)
    buf = io.BytesIO()
    sf.write(buf, samples, RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@pytest.fixture(scope="module")
def data(node):
    """{object name or shard/member name: wav bytes} in a fresh bucket, and the bucket."""
    client = make_client(node.url)
    b = client.bucket("ml-e2e")
    b.create(exist_ok=True)
    files = {}
    for i in range(3):
        files[f"ml/plain-{i}.wav"] = wav(i, 400 + 50 * i)
        b.object(f"ml/plain-{i}.wav").get_writer().put_content(files[f"ml/plain-{i}.wav"])
    for k, (shard, fmt) in enumerate(SHARDS.items()):
        members = [(f"w{j}.wav", wav(10 * k + j, 300 + 70 * j)) for j in range(2)]
        b.object(shard).get_writer().put_content(shard_bytes(fmt, members))
        files.update({f"{shard}/{m}": d for m, d in members})
    yield b, files
    b.delete(missing_ok=True)


def cutset(bucket, files):
    cuts = []
    for i, (name, blob) in enumerate(files.items()):
        n = sf.info(io.BytesIO(blob)).frames
        rec = Recording(id=f"r{i}", sampling_rate=RATE, num_samples=n, duration=n / RATE,
                        sources=[AudioSource(type="url", channels=[0],
                                             source=f"ais://{bucket.name}/{name}")])
        cuts.append(MonoCut(id=name, start=0, duration=n / RATE, channel=0, recording=rec))
    return CutSet.from_cuts(cuts)


@pytest.fixture
def endpoint(node, monkeypatch):
    monkeypatch.setenv("AIS_ENDPOINT", node.url)
    return node.url


def test_batch_loader_bytes(data, endpoint):
    bucket, files = data
    cuts = AISBatchLoader()(cutset(bucket, files))
    for cut in cuts:
        assert cut.recording.sources[0].type == "memory"
        assert cut.recording.sources[0].source == files[cut.id]


def test_batch_loader_fallback(data, node, tmp_path):
    """A refused GetBatch (this node takes one entry per request) makes Lhotse GET each item
    by name, .zip members included (`d-002.zip/w0.wav` with no archpath)."""
    bucket, files = data
    strict = Node(node.data_dir, tmp_path / "strict.log", serve_argv(workers=1, threads=2),
                  env={"GETBATCH_MAX_ENTRIES": "1"})
    try:
        os.environ["AIS_ENDPOINT"] = strict.url
        cuts = AISBatchLoader()(cutset(bucket, files))
        refused = requests.get(f"{strict.url}/v1/ml/moss/{bucket.name}",
                               json={"in": [{"objname": n} for n in list(files)[:2]]})
    finally:
        os.environ.pop("AIS_ENDPOINT", None)
        strict.stop()
    assert {c.id: c.recording.sources[0].source for c in cuts} == files
    assert refused.status_code == 400 and "entries" in refused.json()["message"]


class _Audio(Dataset):
    def __init__(self):
        self.samples = AudioSamples(use_batch_loader=True)

    def __getitem__(self, cuts):
        audio, lens = self.samples(cuts)
        return [c.id for c in cuts], audio, lens


@pytest.mark.parametrize("workers", [0, 2])
def test_audio_samples_in_a_dataloader(data, endpoint, workers):
    bucket, files = data
    loader = DataLoader(_Audio(), sampler=SimpleCutSampler(cutset(bucket, files), max_cuts=4),
                        batch_size=None, num_workers=workers)
    seen = set()
    for ids, audio, lens in loader:
        for row, name, n in zip(audio, ids, lens):
            want, _ = sf.read(io.BytesIO(files[name]), dtype="float32")
            assert int(n) == len(want) and torch.equal(row[:n], torch.from_numpy(want))
            seen.add(name)
    assert seen == set(files)


def _plain(files):
    return {k: v for k, v in files.items() if k.startswith("ml/plain-")}


def test_iter_map_and_parallel_map(data):
    bucket, files = data
    prefix = {bucket: "ml/plain-"}
    assert dict(AISIterDataset(bucket, prefix_map=prefix)) == _plain(files)
    m = AISMapDataset(bucket, prefix_map=prefix)
    assert len(m) == 3 and dict(m[i] for i in range(len(m))) == _plain(files)
    p = AISParallelMapDataset(bucket, prefix_map=prefix, num_workers=2)
    got = {}
    for i in range(len(p)):
        name, buf = p[i]  # range reads into shared memory
        got[name] = buf.tobytes()
        buf.close()
    assert got == _plain(files)


@pytest.mark.parametrize("workers", [0, 2])
def test_batch_iter_dataset(data, client, workers):
    bucket, files = data
    ds = AISBatchIterDataset(bucket, client=client, max_batch_size=2,
                             prefix_map={bucket: "ml/"}, partition_sources_by_worker=False)
    got = {}
    for batch in DataLoader(ds, batch_size=3, num_workers=workers, collate_fn=lambda x: x):
        got.update(batch)
    want = dict(_plain(files))
    for shard in SHARDS:
        want[shard] = bucket.object(shard).get_reader().read_all()
    assert got == want  # with 2 workers each lists everything: duplicates, same bytes


def test_shard_reader(data):
    bucket, files = data
    samples = dict(AISShardReader(bucket, prefix_map={bucket: "ml/d-000.tar"}))
    assert {k: v["wav"] for k, v in samples.items()} == {
        m: files[f"ml/d-000.tar/{m}.wav"] for m in ("w0", "w1")}


def test_multishard_stream(data, node):
    bucket, files = data
    sources = [DataShard(node.url, bucket.name, prefix=p) for p in ("ml/d-000", "ml/d-002")]
    rows = list(AISMultiShardStream(data_sources=sources))
    assert rows == [(files[f"ml/d-000.tar/w{j}.wav"], files[f"ml/d-002.zip/w{j}.wav"])
                    for j in range(2)]
