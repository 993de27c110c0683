"""The shared fixtures, a pytest plugin (registered in tests/conftest.py): `moto` (a real S3
server), `node` (one real node for the session, its aws:// buckets on moto), `plain_node` (the
same data dir under gunicorn's stock gthread worker), `client` and `bucket`; `app_node` (a
node's app in process, through falcon.testing: apps.py). A test module overrides `node` or
`client` with its own fixture of that name (tests/cluster/test_moss_cluster.py runs the single
node's tests against a cluster so).

Hypothesis runs under the "suite" profile: no per-example deadline and no health check that
times data generation, since on a busy machine those fail for the machine, not the code
(a test's own @settings that names suppress_health_check lists too_slow as well)."""
import os

import pytest
from hypothesis import HealthCheck, settings

from tests.remote_servers import boto3_client, s3_env, start_moto

from .apps import app_client
from .nodes import Node, make_client, plain_gthread_argv, serve_argv

settings.register_profile("suite", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")


@pytest.fixture(scope="session")
def moto(tmp_path_factory):
    server = start_moto(str(tmp_path_factory.mktemp("moto")))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def node(tmp_path_factory, moto):
    """The shared node; its aws:// buckets live on a moto S3 server, reached through the
    standard AWS environment alone."""
    d = tmp_path_factory.mktemp("node")
    n = Node(d / "data", d / "server.log", serve_argv(), env=s3_env(moto))
    yield n
    n.stop()


@pytest.fixture(scope="session")
def plain_node(node, tmp_path_factory):
    """A second server over the SAME data dir, with the stock gthread worker."""
    d = tmp_path_factory.mktemp("plain")
    n = Node(node.data_dir, d / "server.log", plain_gthread_argv())
    yield n
    n.stop()


@pytest.fixture(scope="module")
def app_node(tmp_path_factory):
    """A single node's app in this process (a falcon.testing.TestClient), its own data dir,
    shared by a module's tests."""
    return app_client(tmp_path_factory.mktemp("app") / "data")


@pytest.fixture
def client(node):
    return make_client(node.url)


_counter = [0]


@pytest.fixture
def bucket(request, client, moto):
    """A new empty bucket: ais:// by default; on S3 (moto) for tests parametrized with
    `pytest.mark.parametrize("bucket", ["ais", "aws"], indirect=True)`."""
    _counter[0] += 1
    name = f"b{os.getpid()}-{_counter[0]}"
    provider = getattr(request, "param", "ais")
    if provider == "ais":
        b = client.bucket(name)
        b.create(exist_ok=True)
        yield b
        b.delete(missing_ok=True)
        return
    s3 = boto3_client(moto)
    s3.create_bucket(Bucket=name)
    yield client.bucket(name, provider="aws")  # a remote bucket: no create step
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for o in page.get("Contents", []):
            s3.delete_object(Bucket=name, Key=o["Key"])
    s3.delete_bucket(Bucket=name)
