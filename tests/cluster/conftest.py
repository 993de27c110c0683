"""Cluster fixtures: `cluster` (3 nodes shared by a module's tests: do not kill its nodes) and
`make_cluster(n)` (a private cluster per test, with its own etcd, for faults and membership)."""
import pytest

from tests.remote_servers import s3_env
from tests.support.nodes import make_client

from .nodes import Cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, moto):
    """3 nodes that reach the moto S3 server through the AWS environment, as the shared
    single node does (the GetBatch tests run with their bucket on ais and on aws)."""
    c = Cluster(tmp_path_factory.mktemp("cluster"), n=3, env=s3_env(moto))
    yield c
    c.close()


@pytest.fixture
def make_cluster(tmp_path):
    made = []

    def make(n=3, **kw):
        c = Cluster(tmp_path / f"c{len(made)}", n=n, **kw)
        made.append(c)
        return c
    yield make
    for c in made:
        c.close()


@pytest.fixture
def clients(cluster):
    """An SDK client per node of `cluster`."""
    return [make_client(u) for u in cluster.urls]
