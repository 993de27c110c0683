"""getbatch.torch against a real node: every sample once per epoch through a DataLoader with
0 and 2 workers, steps in order, a restart from a checkpoint (also with another world size)
continuing at the exact sample, and batches of names without a plan."""
import pytest

torch = pytest.importorskip("torch", reason="getbatch.torch needs torch (the torch extra)")

from getbatch.loader.fetch import BatchFailed, Fetcher  # noqa: E402
from getbatch.loader.plans import create_plan, list_plans  # noqa: E402
from getbatch.torch import BatchesDataset, EpochDataset, EpochLoader  # noqa: E402

from .test_epochs import PER_SHARD, SHARDS, _content, data  # noqa: E402,F401


def _keys(batches):
    return [s["__key__"] for b in batches for s in b]


@pytest.mark.parametrize("workers", [0, 2])
def test_epoch_loader_every_sample_once_in_step_order(node, data, workers):  # noqa: F811
    rec = create_plan(node.url, bucket=data.name, shards={"prefix": "train/"},
                      group="sample", seed=5, world_size=1, batch_size=3)
    assert rec["id"] in [p["id"] for p in list_plans(node.url)]
    ds = EpochDataset(node.url, rec["id"], epoch=2)
    batches = list(EpochLoader(ds, num_workers=workers))
    assert [b.step for b in batches] == list(range(rec["steps"]))
    keys = _keys(batches)
    assert len(keys) == len(set(keys)) == SHARDS * PER_SHARD
    for b in batches:
        for s in b:
            shard_member = s["__key__"].split("/")[-1]
            i, k = map(int, shard_member.split("-"))
            assert s == {"__key__": s["__key__"], "cls": _content(i, k, "cls"),
                         "jpg": _content(i, k, "jpg")}
    again = list(EpochLoader(EpochDataset(node.url, rec["id"], epoch=2), num_workers=0))
    assert _keys(again) == keys


def test_checkpoint_resume_and_elastic(node, data):  # noqa: F811
    rec = create_plan(node.url, bucket=data.name, shards={"prefix": "train/"},
                      group="sample", seed=9, world_size=2, batch_size=2)
    whole = [_keys(EpochLoader(EpochDataset(node.url, rec["id"], rank=r))) for r in range(2)]
    # rank 0 runs 2 steps, checkpoints, and a new job continues from there
    loader = EpochLoader(EpochDataset(node.url, rec["id"], rank=0), num_workers=2)
    seen = []
    for b in loader:
        seen += [s["__key__"] for s in b]
        if b.step == 1:
            state = loader.state_dict()
            break
    fresh = EpochLoader(EpochDataset(node.url, rec["id"], rank=0))
    fresh.load_state_dict(state)
    seen += _keys(fresh)
    assert seen == whole[0]
    # both ranks checkpoint after step 1; the job resumes on 3 ranks: nothing lost or repeated
    consumed = [k for r in range(2) for k in whole[r][:4]]
    rest = []
    for r in range(3):
        ds = EpochDataset(node.url, rec["id"], rank=r, world_size=3)
        ds.load_state_dict(dict(state, step=2))
        rest += _keys(EpochLoader(ds))
    assert sorted(consumed + rest) == sorted(whole[0] + whole[1])
    assert len(set(consumed + rest)) == SHARDS * PER_SHARD


def test_batches_without_a_plan(node, data):  # noqa: F811
    batches = [[{"objname": f"train/shard-{s:03d}.tar", "archpath": f"{s}-{k}.jpg"}
                for k in range(PER_SHARD)] for s in range(SHARDS)]
    got = list(EpochLoader(BatchesDataset(node.url, batches, bucket=data.name), num_workers=2))
    assert [b.step for b in got] == list(range(SHARDS))
    for s, b in enumerate(got):
        assert [d for _, d in b] == [_content(s, k, "jpg") for k in range(PER_SHARD)]
    with pytest.raises(BatchFailed, match="404"):
        Fetcher(node.url).names(["train/none.tar"], bucket=data.name)
