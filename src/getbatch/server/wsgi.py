"""A WSGI entry point for servers other than `getbatch serve`: `getbatch.server.wsgi:app`.

The configuration comes from the environment (GETBATCH_*), read when this module is
imported; `getbatch serve` does not use this module (it validates its configuration and
the data directory once, before any worker starts).
"""
from ..config import Config
from ..store import open_storage
from .app import create_app

config = Config.load()
if config.etcd:
    # a cluster node's lease is held by the `getbatch serve` master process (cluster.node)
    raise SystemExit("getbatch.server.wsgi serves a single node; start cluster nodes with "
                     "`getbatch serve --etcd URL --advertise URL`")
app = create_app(config, open_storage(config))
