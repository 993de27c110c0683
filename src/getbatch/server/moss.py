"""GET /v1/ml/moss[/<bucket>]: GetBatch.

Everything is validated and planned before the status line (errors are 4xx with AIS
bodies). The response body is a `BatchOutput`: the gunicorn worker in worker.py sends
it zero-copy when it is a plain TAR of known length; any other server iterates it.
"""
from ..batch import plan as batch_plan
from ..batch.assemble import BatchOutput
from ..batch.request import normalize_provider, parse, parse_coloc
from ..store.names import validate_bucket_name
from .errors import HTTPError


class Moss:
    def __init__(self, store):
        self.store = store

    def on_get(self, req, resp, bucket=None):
        parse_coloc(req.get_param("coloc"))
        provider = normalize_provider(req.get_param("provider") or "ais")
        checked = ()
        if bucket is not None:
            validate_bucket_name(bucket)
            if provider != "ais" or not self.store.has_bucket(bucket):
                raise HTTPError(404, f'bucket "{provider}://{bucket}" does not exist', "ErrBckNotFound")
            checked = ((provider, bucket),)
        mreq = parse(req.bounded_stream.read(), bucket, provider)
        plan = batch_plan.build(mreq, self.store, checked=checked)
        out = BatchOutput(plan, mreq.mime, multipart=not mreq.strm)
        resp.content_type = out.content_type
        if out.content_length is not None:
            resp.content_length = out.content_length
        resp.stream = out

    def on_get_extra(self, req, resp, bucket, extra):
        raise HTTPError(400, f"invalid URL path {req.path!r}: expecting /v1/ml/moss or /v1/ml/moss/<bucket>")
