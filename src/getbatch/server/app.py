"""Builds the Falcon WSGI app of a node: routes, and the one place errors are rendered."""
import falcon

from .buckets import Bucket, BucketCollection
from .cluster import Daemon, Health
from .errors import handle_exception, make_serializer
from .metrics import install as install_metrics
from .moss import Moss
from .objects import Object


def create_app(config, storage):
    """The WSGI app serving `storage` (a store Storage) with `config` (a Config)."""
    app = falcon.App()
    app.req_options.keep_blank_qs_values = True
    app.req_options.strip_url_path_trailing_slash = False
    app.add_error_handler(Exception, handle_exception)
    app.set_error_serializer(make_serializer(config.node_id))
    app.add_route("/v1/buckets", BucketCollection(storage, config))
    app.add_route("/v1/buckets/{bucket}", Bucket(storage, config))
    app.add_route("/v1/objects/{bucket}/{obj:path}", Object(storage, config))
    moss = Moss(storage, config)
    app.add_route("/v1/ml/moss", moss)
    app.add_route("/v1/ml/moss/{bucket}", moss)
    app.add_route("/v1/ml/moss/{bucket}/{extra:path}", moss, suffix="extra")
    app.add_route("/v1/daemon", Daemon(config.node_id))
    app.add_route("/v1/health", Health())
    install_metrics(app, config)
    return app
