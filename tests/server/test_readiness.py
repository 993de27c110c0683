"""GET /v1/health?readiness=true (AIS's readiness query): on a cluster, 503 while the node is
not in the cluster map it holds (joining, or its lease lapsed), 200 once it is; plain
/v1/health (liveness) is 200 either way, and so is a single node."""
import falcon
import falcon.testing

from getbatch.cluster.smap import NodeInfo, Smap
from getbatch.server.cluster import Health
from getbatch.server.errors import handle_exception, make_serializer

ME = NodeInfo("n1", "https://127.0.0.1:1")
OTHER = NodeInfo("n2", "https://127.0.0.1:2")


class _Cluster:
    node = ME

    def __init__(self, smap):
        self.smap = smap


def _client(cluster):
    app = falcon.App()
    app.add_error_handler(Exception, handle_exception)
    app.set_error_serializer(make_serializer("n1"))
    app.add_route("/v1/health", Health(cluster))
    return falcon.testing.TestClient(app)


def test_readiness_follows_the_cluster_map():
    cluster = _Cluster(Smap(3, [OTHER], "n1"))   # not (yet) a member
    client = _client(cluster)
    r = client.simulate_get("/v1/health", params={"readiness": "true"})
    assert r.status_code == 503 and "not in the cluster map" in r.json["message"]
    assert client.simulate_get("/v1/health").status_code == 200
    cluster.smap = Smap(4, [ME, OTHER], "n1")     # joined
    assert client.simulate_get("/v1/health", params={"readiness": "true"}).status_code == 200


def test_a_single_node_is_always_ready():
    assert _client(None).simulate_get("/v1/health", params={"readiness": "true"}).status_code == 200
