"""Seeded fault injection on a real cluster, with the consistency contract checked: a short
schedule in every run (a kill, a clean restart, a join and etcd paused past the lease, over
overwrites, deletes, racing PUTs, GETs and GetBatches with multi-MiB items), a long random one
with `-m slow` (NEMESIS_SEED, NEMESIS_DURATION to choose). A failure prints its seed; replay it
with `bench/nemesis_run.py --seed S --duration D`."""
import os
import random

import pytest

from .nemesis import trial

SHORT_SEED = 29   # restart, kill, join, etcd_pause in 12 s


def _run(make_cluster, seed, duration, **kw):
    c = make_cluster(3, env={"GETBATCH_MAX_WAIT": "3s"})
    report = trial(c, seed, duration, **kw)
    text = "\n".join(report.lines())
    print(text)
    return report, text


def test_short_schedule_keeps_the_contract(make_cluster):
    report, text = _run(make_cluster, SHORT_SEED, 12, names=10, large_size=(2 << 20, 4 << 20))
    assert {"restart", "kill", "join", "etcd_pause"} <= set(report.faults), text
    assert report.ops.get("put", 0) >= 20 and report.ops.get("read", 0) >= 20, text
    assert report.violations == [], text


@pytest.mark.slow
def test_long_schedule_keeps_the_contract(make_cluster, request):
    if "slow" not in (request.config.option.markexpr or ""):
        pytest.skip("a long run: select it with -m slow")
    seed = int(os.environ.get("NEMESIS_SEED") or random.randrange(1 << 31))
    report, text = _run(make_cluster, seed, float(os.environ.get("NEMESIS_DURATION", 180)),
                        names=16)
    assert report.violations == [], text
