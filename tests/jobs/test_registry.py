"""The job registry (records any process can read) and AIS name templates."""
import itertools
import json
import subprocess
import sys

import pytest

from getbatch.jobs import JobNotFound, Registry, TooManyJobs
from getbatch.jobs.template import Template, TemplateError


def test_record_lifecycle(tmp_path):
    reg = Registry(str(tmp_path))
    job = reg.start("delete-listrange", "b", "ais", total=3)
    assert reg.get(job.id)["state"] == "running"
    job.add(objects=2, nbytes=10)
    job.add(errors=1)
    job.finish("1 object failed: x")
    rec = Registry(str(tmp_path)).get(job.id)  # as another process sees it
    assert (rec["state"], rec["objects"], rec["bytes"], rec["errors"]) == ("failed", 2, 10, 1)
    assert rec["end_ns"] >= rec["start_ns"] > 0 and rec["error"] == "1 object failed: x"


def test_running_job_of_a_dead_process_reads_as_aborted(tmp_path):
    reg = Registry(str(tmp_path))
    job = reg.start("prefetch-listrange")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    rec = dict(job.record, pid=int(dead))
    reg.save(rec)
    got = reg.get(job.id)
    assert got["state"] == "aborted" and f"pid {dead}" in got["error"] and got["end_ns"]


def test_abort_request(tmp_path):
    reg = Registry(str(tmp_path))
    job = reg.start("delete-listrange")
    assert not job.abort_requested()
    reg.abort(job.id)
    assert job.abort_requested()
    job.finish("aborted on request", aborted=True)
    assert reg.get(job.id)["state"] == "aborted" and not job.abort_requested()


def test_bounded_and_unknown(tmp_path):
    reg = Registry(str(tmp_path), keep=3)
    ids = []
    for _ in range(6):
        job = reg.start("delete-listrange")
        job.finish()
        ids.append(job.id)
    running = reg.start("delete-listrange")
    kept = [r["id"] for r in reg.list()]
    assert kept == ids[-2:] + [running.id]  # finished ones beyond `keep` went, oldest first
    for bad in (ids[0], "../etc/passwd", "", "x" * 65, None):
        with pytest.raises(JobNotFound):
            reg.get(bad)
    (tmp_path / "Torn.json").write_text('{"id": "Torn", "sta')
    with pytest.raises(JobNotFound):
        reg.get("Torn")
    assert json.loads((tmp_path / f"{running.id}.json").read_text())["state"] == "running"


@pytest.mark.parametrize("text, names", [
    ("x-{0..3}", ["x-0", "x-1", "x-2", "x-3"]),
    ("a{08..10}b{1..5..2}", ["a08b1", "a08b3", "a08b5", "a09b1", "a09b3", "a09b5",
                             "a10b1", "a10b3", "a10b5"]),
    ("s-{000..002}.tar", ["s-000.tar", "s-001.tar", "s-002.tar"]),
])
def test_template_expansion(text, names):
    t = Template(text)
    assert list(t) == names and t.count() == len(names) and not t.is_prefix


def test_template_prefix_lazy_and_errors():
    assert Template("pre/").is_prefix and Template("").is_prefix
    assert list(itertools.islice(Template("{0..999999999999}"), 3)) == ["0", "1", "2"]
    for bad in ("x{1..}", "x{3..1}", "{a,b}", "x{0..5..0}", "x}", 5, "{0..99999999}{0..99999}"):
        with pytest.raises(TemplateError):
            Template(bad)


def test_running_jobs_are_bounded(tmp_path):
    reg = Registry(str(tmp_path), max_running=2)
    a = reg.start("delete-listrange")
    reg.start("delete-listrange")
    with pytest.raises(TooManyJobs):
        reg.start("delete-listrange")
    a.finish()
    reg.start("delete-listrange")
