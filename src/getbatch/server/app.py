"""Builds the Falcon WSGI app of a node: routes, and the one place errors are rendered."""
import os

import falcon

from ..auth.keys import signing_key
from ..jobs import Registry
from .auth import AuthMiddleware
from .buckets import Bucket, BucketCollection
from .cluster import Daemon, Health
from .errors import handle_exception, make_serializer
from .jobs import Cluster
from .moss import Moss
from .objects import Object


def create_app(config, storage):
    """The WSGI app serving `storage` (a store Storage) with `config` (a Config)."""
    # auth: with `auth` off no middleware runs and every request is allowed
    app = falcon.App(middleware=[AuthMiddleware(signing_key(config))] if config.auth else [])
    app.req_options.keep_blank_qs_values = True
    app.req_options.strip_url_path_trailing_slash = False
    app.add_error_handler(Exception, handle_exception)
    app.set_error_serializer(make_serializer(config.node_id))
    app.add_route("/v1/buckets", BucketCollection(storage, config))
    jobs = Registry(os.path.join(config.data_dir, ".sys", "jobs"))
    app.add_route("/v1/buckets/{bucket}", Bucket(storage, config, jobs))
    app.add_route("/v1/objects/{bucket}/{obj:path}", Object(storage, config))
    moss = Moss(storage, config)
    app.add_route("/v1/ml/moss", moss)
    app.add_route("/v1/ml/moss/{bucket}", moss)
    app.add_route("/v1/ml/moss/{bucket}/{extra:path}", moss, suffix="extra")
    app.add_route("/v1/daemon", Daemon(config.node_id))
    app.add_route("/v1/health", Health())
    app.add_route("/v1/cluster", Cluster(jobs, config))
    return app
