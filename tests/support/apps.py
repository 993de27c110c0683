"""In-process nodes: the app `create_app` builds over a data directory, driven through
falcon.testing (no process, no socket, no port). For what a resource answers: status codes,
headers, messages, validation. What needs a process (the worker and its event loop,
streaming to a socket, signals, several workers, the SDK's own HTTP) runs against a real
node (nodes.Node)."""
import falcon.testing

from getbatch.config import Config
from getbatch.server.app import create_app
from getbatch.store import open_storage


def app_client(data_dir, **settings):
    """A falcon.testing.TestClient of a single node's app serving `data_dir`; `settings` are
    Config settings (validated as the node would)."""
    config = Config().replace(data_dir=str(data_dir), **settings)
    return falcon.testing.TestClient(create_app(config, open_storage(config)))


def create_bucket(client, name):
    """Create ais://`name` through the app's own API; the response."""
    r = client.simulate_post(f"/v1/buckets/{name}", json={"action": "create-bck"})
    assert r.status_code == 200, r.text
    return r
