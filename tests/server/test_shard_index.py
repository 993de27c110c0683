"""Shard indexes as a job (`getbatch shard-index build | summary | abort`) on the shared node:
a build over a prefix or a template indexes exactly those shards, the summary says how many
of the current versions are indexed (a replaced shard is stale), `show job` lists the build,
and an abort stops a long one."""
import json
import subprocess
import sys
import time

import requests

from ..archive.tarhelp import make_tar


def cli(*args):
    return subprocess.run([sys.executable, "-m", "getbatch.cli", *args], capture_output=True,
                          text=True, timeout=120)


def summary(node, bucket, *extra):
    r = cli("shard-index", "summary", "--url", node.url, "--bucket", bucket.name, "--json",
            *extra)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_build_then_summary_and_stale(node, bucket):
    for s in range(6):
        bucket.object(f"sh/s{s}.tar").get_writer().put_content(
            make_tar([(f"m{m}.wav", b"%d" % m * 300) for m in range(5)]))
    bucket.object("sh/notes.txt").get_writer().put_content(b"not a shard")
    before = summary(node, bucket)
    assert (before["shards"], before["indexed"], before["members"]) == (6, 0, 0)
    r = cli("shard-index", "build", "--url", node.url, "--bucket", bucket.name,
            "--template", "sh/s{0..2}.tar", "--wait")
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.strip()
    assert f"index-shards {job_id} done: 3 shards indexed" in r.stderr
    after = summary(node, bucket)
    assert (after["shards"], after["indexed"], after["members"], after["stale"]) == (6, 3, 15, 0)
    assert after["indexed_bytes"] * 2 == after["bytes"]
    # the rest by prefix; a new version of one shard makes its index stale
    r = cli("shard-index", "build", "--url", node.url, "--bucket", bucket.name, "--prefix",
            "sh/", "--wait")
    assert r.returncode == 0 and "6 shards indexed" in r.stderr, r.stderr
    bucket.object("sh/s1.tar").get_writer().put_content(make_tar([("new.wav", b"n" * 10)]))
    got = summary(node, bucket, "--prefix", "sh/")
    assert (got["shards"], got["indexed"], got["stale"], got["members"]) == (6, 5, 1, 25)
    shown = cli("show", "job", "--url", node.url, "--all")
    assert shown.returncode == 0 and any(job_id in ln and "index-shards" in ln and "done" in ln
                                         for ln in shown.stdout.splitlines()), shown.stdout
    # a batch after the build reads the indexed shard as before
    body = {"in": [{"objname": "sh/s0.tar", "archpath": "m3.wav"}], "strm": True}
    r = requests.get(f"{node.url}/v1/ml/moss/{bucket.name}", json=body, timeout=30)
    assert r.status_code == 200 and b"3" * 300 in r.content


def test_abort_stops_a_long_build(node, bucket):
    # a million names, none existing: a long walk that an abort stops at once
    r = cli("shard-index", "build", "--url", node.url, "--bucket", bucket.name,
            "--template", "x-{0..999999}.tar")
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.strip()
    r = cli("shard-index", "abort", "--url", node.url, job_id)
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 30
    while True:
        st = requests.get(f"{node.url}/v1/cluster", params={"what": "status"},
                          json={"ID": job_id, "Kind": "index-shards"}, timeout=10).json()
        if st["end_time"]:
            break
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert st["aborted"]


def test_bad_requests_are_one_line(node, bucket):
    r = cli("shard-index", "build", "--url", node.url, "--bucket", bucket.name,
            "--template", "s-{9..1}.tar")
    assert r.returncode == 1 and "400" in r.stderr and "start <= end" in r.stderr, r.stderr
    r = cli("shard-index", "summary", "--url", node.url, "--bucket", "no-such-bucket")
    assert r.returncode == 1 and "404" in r.stderr and "Traceback" not in r.stderr, r.stderr
