"""POST /v1/_peer/batch: this node as the owner of part of a cluster GetBatch (peerwire.py).

Only for the cluster's nodes (PeerGuard refuses a request without the cluster secret). The
`storage` is this node's own share: an owner never looks elsewhere. The sub-batch
is validated and planned like a client's request, before the status line (so a bad entry is
an AIS error the DT passes on); the answer is the plan frame, then every item as a TAR
frame, with a Content-Length: the gunicorn worker sends it through the zero-copy emit loop;
or, with `peer_compression` set and a DT that reads it, in compressed blocks (peerzip.py).
"""
import logging
import time

from ..batch import plan as batch_plan
from ..batch.assemble import BatchOutput
from ..batch.request import parse
from ..cluster import peerwire, peerzip
from .request_parts import read_body

log = logging.getLogger("getbatch.batch")


class PeerBatch:
    def __init__(self, storage, config, runtime):
        """`runtime`: the app's NodeRuntime (batch ids, look-ahead threads, peerzip verdict)."""
        self.storage = storage
        self.config = config
        self.runtime = runtime

    def on_post(self, req, resp):
        t0 = time.monotonic()
        cfg = self.config.current()
        mreq = parse(read_body(req, cfg.max_body), max_entries=cfg.max_entries)
        plan = batch_plan.build(mreq, self.storage, max_soft_errs=len(mreq.entries),
                                max_inflate=cfg.max_inflate)
        plan.uuid = self.runtime.batch_ids.next()
        prefix = peerwire.plan_frame(plan.uuid, plan.items, batch_plan.identity,
                                     every_id=req.get_param(peerwire.IDS_PARAM) == peerwire.IDS_ALL)
        out = BatchOutput(plan, "tar", multipart=False, window=cfg.window, end=False,
                          warmup=cfg.warmup_workers, warm_pool=self.runtime.warm_pool,
                          prefix=prefix)
        out.on_close = lambda o: _log(o, req.remote_addr, t0)
        resp.content_type = peerwire.CONTENT_TYPE
        resp.content_length = out.content_length
        resp.stream = out
        verdict = self.runtime.peer_compression
        mode = peerzip.wire_mode(cfg, verdict)
        if mode is None or not req.get_header(peerzip.ACCEPT):
            return
        body = out
        if mode == "auto":
            # decided before the head, on the first block of items: where lz4 does not pay
            # the answer goes plain, with its length, and the DT reads it as ever
            it = iter(out)
            head, sample = peerzip.take(it, len(prefix), peerzip.BLOCK)
            body = peerzip.Replay(head, it, out)
            if not peerzip.pays(sample, cfg.peer_link_mbit):
                verdict.rest_a_while()
                resp.stream = body
                return
        # compressed blocks in HTTP chunks (the worker sends an iterable of unknown length
        # chunked); the plain length in a header of its own
        resp.content_length = None
        resp.set_header(peerzip.RAW_LENGTH, str(out.content_length))
        resp.stream = peerzip.Blocks(body, mode, cfg.peer_link_mbit, verdict)


def _log(out, peer, t0):
    plan = out.plan
    log.log(logging.DEBUG if out.completed else logging.WARNING,
            "peer batch %s %s: for %s, %d entries, %d bytes, %.3f s", plan.uuid,
            "done" if out.completed else "ABORTED", peer, len(plan.items), out.sent,
            time.monotonic() - t0)
