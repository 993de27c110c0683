"""GET /v1/ml/moss[/<bucket>]: GetBatch.

Everything is validated and planned before the status line (errors are 4xx with AIS
bodies). The response body is a `BatchOutput`: the gunicorn worker sends it zero-copy
when it is a plain TAR of known length; any other server iterates it. When the body is
done (sent, or aborted), one log line tells the operator what the batch was.
"""
import logging
import time
import urllib.parse
from functools import partial

from ..batch.assemble import BatchOutput
from ..batch.integrity import VerifiedOutput
from ..batch.request import parse_coloc
from ..cluster.gather import Gather
from ..cluster.peers import Peers
from ..cluster.smap import Smap
from ..cluster.versions import newest_holders
from ..epochs.lookahead import StepWarmer
from ..epochs.request import parse_any
from ..config import check_setting
from ..store import normalize_provider
from .auth import authorize_entries, grant_of
from .request_parts import bucket_backend, read_body
from .errors import AISError, to_ais_error

log = logging.getLogger("getbatch.batch")


class Moss:
    def __init__(self, storage, config, jobs, warm_pool, cluster=None, shared=None, plans=None):
        """`cluster`, `shared`: on a cluster, the node's Cluster and the Storage of its own
        share (what it plans itself); `jobs`: the node's BatchJobs (every batch is a job);
        `warm_pool`: the app's look-ahead threads (batch/warmup.py); `plans`: the epoch
        Plans a request may name a step of."""
        self.storage = storage
        self.config = config
        self.cluster = cluster
        self.shared = shared
        self.jobs = jobs
        self.plans = plans
        self.warm_pool = warm_pool
        self.warmer = (StepWarmer(plans, shared or storage, self.warm_pool)
                       if plans is not None else None)

    def on_get(self, req, resp, bucket=None):
        # the one hook of batch jobs: a job from the request to the end of the body
        jobs = self.jobs
        grant = grant_of(req)
        job = jobs.start(req.remote_addr, bucket, req.get_param("provider") or "ais",
                         grant.sub if grant is not None else "")
        job.sock = req.env.get("gunicorn.socket")   # so that it can be stopped
        try:
            self._get(req, resp, bucket, job)
        except BaseException as exc:
            jobs.failed(job, _error_message(exc))
            raise

    def _get(self, req, resp, bucket, job):
        t0 = time.monotonic()
        coloc = parse_coloc(req.get_param("coloc"))
        provider = normalize_provider(req.get_param("provider") or "ais")
        checked = ()
        if bucket is not None:
            backend, bucket = bucket_backend(self.storage, req, bucket)
            backend.require_bucket(bucket)
            checked = ((provider, bucket),)
        cfg = self.config.current()
        mreq, where = parse_any(read_body(req, cfg.max_body), self.plans, bucket, provider,
                                cfg.max_entries)
        authorize_entries(req, mreq.entries)
        if where is not None:
            self.warmer.after(where, cfg.warmup_workers)
        if self.cluster is None:
            # a single node is a cluster of one: the same planner, rules and output
            alone = Smap.single(cfg.node_id)
            gather = Gather(mreq, alone, alone.me, self.storage, cfg, Peers(), cfg.max_wait)
        else:
            smap = self.cluster.smap
            # with auth on, or credentials sent (a front proxy may check them), never redirect:
            # `requests` (so the SDK) drops Authorization on a redirect to another host or
            # port, and the owner would answer 401; this node assembles the batch from the
            # owners instead (the same bytes, one more hop)
            stay = cfg.auth or req.get_header("Authorization")
            if coloc and not stay and len(smap) > 1 and _colocate(req, resp, mreq, smap):
                self.jobs.forget(job)   # a batch of the node redirected to
                return
            gather = Gather(mreq, smap, self.cluster.node, self.shared, cfg, self.cluster.peers,
                            _max_wait(req, cfg), versions=None if self.cluster.store is None else
                            partial(newest_holders, self.cluster.store, smap))
        plan = gather.plan(checked)
        plan.uuid = job.id   # logs, the multipart metadata and the job agree
        out = (VerifiedOutput if mreq.cksum else BatchOutput)(
            plan, mreq.mime, multipart=not mreq.strm, window=cfg.window,
            warmup=0 if req.context.get("loaded") else cfg.warmup_workers,
            warm_pool=self.warm_pool)
        self.jobs.streaming(job, out)

        def closed(o):
            self.jobs.closed(job, o)
            _log_batch(o, req.remote_addr, t0)
        out.on_close = closed
        resp.content_type = out.content_type
        if out.content_length is not None:
            resp.content_length = out.content_length
        resp.stream = out

    def on_get_extra(self, req, resp, bucket, extra):
        raise AISError(400, f"invalid URL path {req.path!r}: expecting /v1/ml/moss or "
                            "/v1/ml/moss/<bucket>")


def _max_wait(req, cfg):
    """Seconds a peer may send nothing: the request's `max_wait` query parameter (with the
    setting's bounds), else the setting."""
    raw = req.get_param("max_wait")
    if raw is None:
        return cfg.max_wait
    try:
        return check_setting("max_wait", raw)
    except ValueError as exc:
        raise AISError(400, f"invalid max_wait={raw!r}: {exc}") from None


def _colocate(req, resp, mreq, smap):
    """coloc=1|2 (auth off): redirect (307) to the node that owns the most entries, unless it
    is this one. The target is told coloc=0, so a membership change between the two nodes' views
    cannot bounce the request back."""
    counts = {}
    for e in mreq.entries:
        nid = smap.owner(e.provider, e.bucket, e.objname).id
        counts[nid] = counts.get(nid, 0) + 1
    best = max(smap.nodes, key=lambda n: (counts.get(n.id, 0), n.id == smap.self_id))
    if best.id == smap.self_id:
        return False
    params = [(k, v) for k, v in req.params.items() if k != "coloc"] + [("coloc", "0")]
    query = "&".join(f"{urllib.parse.quote(k)}={urllib.parse.quote(str(v))}" for k, v in params)
    resp.status = 307
    resp.location = f"{best.url}{req.path}?{query}"
    return True


def _error_message(exc):
    """What a batch that failed before its status line answered, for its job."""
    err = exc if isinstance(exc, AISError) else to_ais_error(exc)
    if err is None:
        return f"500 internal error: {type(exc).__name__}"
    return f"{err.status_code} {err.description}"


def _log_batch(out, client, t0):
    plan = out.plan
    log.info("batch %s %s: client %s, %d entries, %d bytes, %.3f s, %d soft errors, %s, %s",
             plan.uuid, "done" if out.completed else "ABORTED", client, len(plan.items),
             out.sent, time.monotonic() - t0, plan.soft_errors, out.fmt,
             "multipart" if out.boundary else "streaming")
