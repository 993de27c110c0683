"""Look-ahead: serving step n warms steps n+1..n+ahead once (each shard they read opened,
its index built) and stops at the end of the epoch."""
import io
import time

from getbatch.batch.warmup import WarmPool
from getbatch.epochs.lookahead import StepWarmer
from getbatch.epochs.plans import Plans
from getbatch.epochs.request import parse_epoch
from getbatch.store import LocalStore, Storage
from tests.archive.tarhelp import make_tar
from tests.support.waiting import until


class CountingStore(LocalStore):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.opened = []

    def open_shard(self, bucket, name, budget=None):
        self.opened.append(name)
        return super().open_shard(bucket, name, budget)


def test_next_steps_warmed_once(tmp_path):
    st = CountingStore(tmp_path / "data", fsync=False)
    st.create_bucket("b")
    for s in range(8):
        data = make_tar([(f"{s}-{k}.bin", b"x" * 1000) for k in range(4)])
        st.put("b", f"s-{s}.tar", io.BytesIO(data), len(data))
    storage = Storage({"ais": st})
    plans = Plans(str(tmp_path / "data"), storage)
    rec = plans.create({"bucket": "b", "shards": {"prefix": "s-"}, "batch_size": 4,
                        "shuffle": {"mode": "none"}})
    warmer = StepWarmer(plans, storage, WarmPool())
    body = b'{"plan": "%s", "epoch": 0, "rank": 0, "step": 5, "ahead": 2}' % rec["id"].encode()
    _, where = parse_epoch(body, plans, 1000)
    st.opened.clear()
    warmer.after(where, workers=1)
    until(lambda: sorted(set(st.opened)) == ["s-6.tar", "s-7.tar"], "the next steps were not warmed")
    warmer.after(where, workers=1)        # warmed already: nothing more
    time.sleep(0.2)
    assert sorted(st.opened) == ["s-6.tar", "s-7.tar"]
    _, last = parse_epoch(body.replace(b'"step": 5', b'"step": 7'), plans, 1000)
    warmer.after(last, workers=1)         # the last step: nothing after it
    _, off = parse_epoch(body.replace(b'"ahead": 2', b'"ahead": 0'), plans, 1000)
    warmer.after(off, workers=1)
    time.sleep(0.2)
    assert sorted(st.opened) == ["s-6.tar", "s-7.tar"]
