"""GET /v1/ml/moss[/<bucket>]: GetBatch.

Everything is validated and planned before the status line (errors are 4xx with AIS
bodies). The response body is a `BatchOutput`: the gunicorn worker sends it zero-copy
when it is a plain TAR of known length; any other server iterates it. When the body is
done (sent, or aborted), one log line tells the operator what the batch was.
"""
import logging
import time

from ..batch import plan as batch_plan
from ..batch.assemble import BatchOutput
from ..batch.request import parse, parse_coloc
from ..store import normalize_provider
from .auth import authorize_entries
from .buckets import bucket_backend, read_body
from .errors import AISError

log = logging.getLogger("getbatch.batch")


class Moss:
    def __init__(self, storage, config):
        self.storage = storage
        self.config = config

    def on_get(self, req, resp, bucket=None):
        t0 = time.monotonic()
        parse_coloc(req.get_param("coloc"))
        provider = normalize_provider(req.get_param("provider") or "ais")
        checked = ()
        if bucket is not None:
            backend, bucket = bucket_backend(self.storage, req, bucket)
            backend.require_bucket(bucket)
            checked = ((provider, bucket),)
        cfg = self.config
        mreq = parse(read_body(req, cfg.max_body), bucket, provider, max_entries=cfg.max_entries)
        authorize_entries(req, mreq.entries)
        plan = batch_plan.build(mreq, self.storage, max_soft_errs=cfg.max_soft_errs,
                                checked=checked, max_inflate=cfg.max_inflate)
        out = BatchOutput(plan, mreq.mime, multipart=not mreq.strm, window=cfg.window)
        out.on_close = lambda o: _log_batch(o, req.remote_addr, t0)
        resp.content_type = out.content_type
        if out.content_length is not None:
            resp.content_length = out.content_length
        resp.stream = out

    def on_get_extra(self, req, resp, bucket, extra):
        raise AISError(400, f"invalid URL path {req.path!r}: expecting /v1/ml/moss or "
                            "/v1/ml/moss/<bucket>")


def _log_batch(out, client, t0):
    plan = out.plan
    log.info("batch %s %s: client %s, %d entries, %d bytes, %.3f s, %d soft errors, %s, %s",
             plan.uuid, "done" if out.completed else "ABORTED", client, len(plan.items),
             out.sent, time.monotonic() - t0, plan.soft_errors, out.fmt,
             "multipart" if out.boundary else "streaming")
