"""Builds the Falcon WSGI app over a store: routes and the one place errors are rendered."""
import falcon

from .buckets import Bucket, BucketCollection
from .cluster import Daemon, Health
from .errors import make_handler
from .moss import Moss
from .objects import Object


def create_app(store, node_id="t[getbatch]"):
    app = falcon.App()
    app.req_options.keep_blank_qs_values = True
    app.req_options.strip_url_path_trailing_slash = False
    handler = make_handler(node_id)
    app.add_error_handler(Exception, handler)
    app.add_error_handler(falcon.HTTPError, handler)
    app.add_route("/v1/buckets", BucketCollection(store))
    app.add_route("/v1/buckets/{bucket}", Bucket(store))
    app.add_route("/v1/objects/{bucket}/{obj:path}", Object(store))
    moss = Moss(store)
    app.add_route("/v1/ml/moss", moss)
    app.add_route("/v1/ml/moss/{bucket}", moss)
    app.add_route("/v1/ml/moss/{bucket}/{extra:path}", moss, suffix="extra")
    app.add_route("/v1/daemon", Daemon(node_id))
    app.add_route("/v1/health", Health())
    return app
