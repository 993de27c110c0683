"""Multi-object jobs through the real SDK: bucket.objects(...).delete()/prefetch()/evict()
return a job id that client.job(id).wait() and .status() follow, from any worker process."""
import pytest
import requests

from aistore.sdk.errors import AISError, InvalidBckProvider
from aistore.sdk.multiobj import ObjectRange

from getbatch.jobs.registry import Registry

from tests.support.apps import create_bucket


def _fill(bucket, names):
    for n in names:
        bucket.object(n).get_writer().put_content(n.encode())


def _names(bucket):
    return [e.name for e in bucket.list_all_objects()]


def test_delete_by_names(client, bucket):
    _fill(bucket, ["a", "b", "c/d", "e"])
    job_id = bucket.objects(obj_names=["a", "c/d"]).delete()
    assert job_id
    res = client.job(job_id).wait(timeout=30, verbose=False)
    assert res.success and not res.error and res.end_time is not None
    assert _names(bucket) == ["b", "e"]
    status = client.job(job_id).status()
    assert status.uuid == job_id and status.end_time > 0 and not status.err
    snap, = client.job(job_id).get_details().list_snapshots()
    assert snap.kind == "delete-listrange" and snap.stats.objects == 2
    assert snap.bucket.name == bucket.name


def test_delete_by_range_and_template(client, bucket):
    _fill(bucket, [f"x-{i}" for i in range(10)] + [f"s-{i:03d}.tar" for i in range(5)] + ["keep"])
    job = bucket.objects(obj_template="x-{0..9..2}").delete()
    assert client.job(job).wait(timeout=30, verbose=False).success
    assert _names(bucket)[:5] == ["keep", "s-000.tar", "s-001.tar", "s-002.tar", "s-003.tar"]
    assert [n for n in _names(bucket) if n.startswith("x-")] == [f"x-{i}" for i in (1, 3, 5, 7, 9)]
    # a range naming objects that do not exist skips them (as on AIS)
    rng = ObjectRange(prefix="s-", min_index=1, max_index=8, pad_width=3, suffix=".tar")
    job = bucket.objects(obj_range=rng).delete()
    assert client.job(job).wait(timeout=30, verbose=False).success
    assert [n for n in _names(bucket) if n.startswith("s-")] == ["s-000.tar"]
    # a template without a range is a prefix
    job = bucket.objects(obj_template="x-").delete()
    assert client.job(job).wait(timeout=30, verbose=False).success
    assert _names(bucket) == ["keep", "s-000.tar"]


def test_missing_named_objects_fail_the_job_by_name(client, bucket):
    _fill(bucket, ["a", "b"])
    job = bucket.objects(obj_names=["a", "nope", "b"]).delete()
    res = client.job(job).wait(timeout=30, verbose=False)
    assert not res.success and "nope" in res.error and "1 object failed" in res.error
    assert _names(bucket) == []  # the others went anyway
    assert "nope" in client.job(job).status().err


def test_job_visible_from_every_worker(node, bucket, client):
    """The node runs 2 worker processes: poll status over fresh connections many times."""
    _fill(bucket, ["a"])
    job = bucket.objects(obj_names=["a"]).delete()
    client.job(job).wait(timeout=30, verbose=False)
    for _ in range(20):
        r = requests.get(f"{node.url}/v1/cluster?what=status", json={"ID": job},
                         headers={"Connection": "close"})
        assert r.status_code == 200 and r.json()["uuid"] == job
    assert Registry(f"{node.data_dir}/.sys/jobs").get(job)["state"] == "finished"


def test_prefetch_and_evict_on_local_bucket(client, bucket, node):
    _fill(bucket, ["a"])
    # the SDK refuses them itself for ais:// buckets
    with pytest.raises(InvalidBckProvider):
        bucket.objects(obj_names=["a"]).prefetch()
    with pytest.raises(InvalidBckProvider):
        bucket.objects(obj_names=["a"]).evict()
    # and so does the server, as AIS does, before any job starts
    for method, action in (("POST", "prefetch-listrange"), ("DELETE", "evict-listrange")):
        r = requests.request(method, f"{node.url}/v1/buckets/{bucket.name}",
                             json={"action": action, "value": {"objnames": ["a"]}})
        assert r.status_code == 400 and "not a remote bucket" in r.json()["message"]
    assert _names(bucket) == ["a"]


@pytest.fixture(scope="module")
def app_bucket(app_node):
    create_bucket(app_node, "sel")
    return app_node, "sel"


@pytest.mark.parametrize("value, words", [
    ({}, "exactly one of"),
    ({"objnames": [], }, "non-empty list"),
    ({"objnames": ["a"], "template": "b"}, "exactly one of"),
    ({"objnames": ["../x"]}, "invalid object name"),
    ({"template": "x-{9..1}"}, "start <= end"),
    ({"template": "x-{a,b}"}, "expecting ranges"),
    ({"template": "x-{0..999999999999}"}, "over the limit of 1000000 (setting max_template)"),
    ("names", "must be an object"),
])
def test_bad_selections_are_400(app_bucket, value, words):
    """In process (a request's validation; the SDK's jobs run against the real node above)."""
    app, name = app_bucket
    r = app.simulate_delete(f"/v1/buckets/{name}", json={"action": "delete-listrange", "value": value})
    assert r.status_code == 400 and words in r.json["message"]


def test_unknown_job_and_missing_bucket(client, node):
    with pytest.raises(AISError) as e:
        client.job("NoSuchJob1").status()
    assert e.value.status_code == 404 and "NoSuchJob1" in e.value.message
    with pytest.raises(AISError) as e:
        client.job("NoSuchJob1").wait(timeout=5, verbose=False)
    assert e.value.status_code == 404
    r = requests.delete(f"{node.url}/v1/buckets/no-such-bucket",
                        json={"action": "delete-listrange", "value": {"objnames": ["a"]}})
    assert r.status_code == 404
    r = requests.get(f"{node.url}/v1/cluster?what=nothing", json={})
    assert r.status_code == 400 and "status" in r.json()["message"]


def test_abort_a_running_job(client, bucket):
    """A template over a million absent names runs long enough to be stopped."""
    _fill(bucket, ["keep"])
    job = bucket.objects(obj_template="absent-{0000000..0999999}").delete()
    snap, = client.job(job).get_details().list_snapshots()
    assert snap.kind == "delete-listrange" and not snap.is_idle and snap.end_time.startswith("0001")
    client.job(job).abort()
    res = client.job(job).wait(timeout=30, verbose=False)
    assert not res.success and "aborted" in res.error
    assert client.job(job).status().aborted
    assert _names(bucket) == ["keep"]


def test_jobs_per_bucket_are_capped_and_each_can_be_stopped(client, bucket, node):
    """max_bucket_jobs (4) run at once on one bucket; the next is a 429 naming the setting,
    while another bucket still takes jobs. Throttled (job_rate), each of these would run for
    minutes: every one stops on request."""
    jobs = [bucket.objects(obj_template=f"absent{i}-{{000000..999999}}").delete()
            for i in range(4)]
    try:
        r = requests.delete(f"{node.url}/v1/buckets/{bucket.name}",
                            json={"action": "delete-listrange",
                                  "value": {"template": "absent-{0..9}"}}, timeout=10)
        assert r.status_code == 429 and "max_bucket_jobs" in r.json()["message"], r.text
        assert r.headers["Retry-After"]
        other = client.bucket(bucket.name + "-other").create(exist_ok=True)
        done = client.job(other.objects(obj_template="x-{0..3}").delete())
        done.wait(timeout=30, verbose=False)
        other.delete()
    finally:
        for job in jobs:
            client.job(job).abort()
    for job in jobs:
        res = client.job(job).wait(timeout=30, verbose=False)
        assert not res.success and "aborted" in res.error
