"""Every error leaves the server here, rendered as an AIS error body.

Resources raise domain exceptions (store, batch, archive) or `AISError`, a Falcon
`HTTPError` with AIS's `tcode`. One error handler maps domain exceptions to AISError;
Falcon composes the response and calls `serializer`, which writes the AIS shape for every
HTTPError, Falcon's own included (405, bad headers, ...).

The AIS SDK picks its exception class by a regex over the body text (`ais://<b>` vs
`ais://<b>/<o>`) and the status, so messages keep AIS wording. Unexpected exceptions
are logged with their traceback for the operator and answered with a short 500 that
names the request, never with a traceback.
"""
import json
import logging

import falcon
import msgspec

from ..archive import ArchiveError, MemberNotFound
from ..batch.errors import BatchError
from ..jobs import TooManyJobs
from ..jobs.listrange import SelectionError
from ..cluster.peers import PeerUnavailable
from ..store import errors as se
from .retryafter import retry_after

log = logging.getLogger("getbatch.server")
_enc = msgspec.json.Encoder()

_STORE_STATUS = [   # (class, status, tcode, Retry-After cause): the first match wins
    (se.BucketNotFound, 404, "ErrBckNotFound", None),
    (se.ObjectNotFound, 404, "ErrObjNotFound", None),
    (se.BucketExists, 409, "ErrBckAlreadyExists", None),
    (se.Conflict, 409, "", None),
    (se.InsufficientStorage, 507, "", None),
    (se.AccessDenied, 403, "", None),
    (se.RemoteBadAnswer, 502, "", None),
    (se.RemoteUnavailable, 503, "", "remote"),
    (PeerUnavailable, 503, "", "peer"),
    (se.Unavailable, 503, "", "cluster"),
    (se.StoreError, 400, "", None),
]


class AISError(falcon.HTTPError):
    """An HTTP error with an AIS message and, where AIS has one, its `tcode`. A 429 or 503
    carries Retry-After for its `cause` (retryafter.py)."""

    def __init__(self, status, message, tcode="", headers=None, cause=None):
        if status in (429, 503):
            headers = dict(headers or {}, **{"Retry-After": retry_after(cause)})
        super().__init__(falcon.code_to_http_status(status), description=message,
                         headers=headers)
        self.tcode = tcode


def to_ais_error(ex):
    """The AISError for a domain exception; None if it is unexpected."""
    if isinstance(ex, BatchError):
        return AISError(ex.status, ex.message)
    if isinstance(ex, se.BucketNotFound) and ex.provider != "ais":
        return AISError(404, str(ex), "ErrRemoteBckNotFound")
    for cls, status, tcode, cause in _STORE_STATUS:
        if isinstance(ex, cls):
            # an error may name headers of its own (a peer's tombstone stamp)
            return AISError(status, str(ex), tcode, getattr(ex, "headers", None), cause=cause)
    if isinstance(ex, MemberNotFound):
        return AISError(404, str(ex), "ErrObjNotFound")
    if isinstance(ex, ArchiveError):
        return AISError(400, str(ex))
    if isinstance(ex, SelectionError):
        return AISError(400, str(ex))
    if isinstance(ex, TooManyJobs):
        return AISError(429, str(ex), cause="jobs")
    if isinstance(ex, RecursionError):
        return AISError(400, "malformed JSON request body: nested too deeply")
    return None


def handle_exception(req, resp, ex, params):
    """Falcon error handler for every non-HTTPError exception."""
    err = to_ais_error(ex)
    if err is None:
        log.exception("internal error serving %s %s", req.method, req.path)
        err = AISError(500, f"internal error serving {req.method} {req.path}; see the server log")
    raise err


def _log_level(status):
    """How loud a refusal is: a missing object is routine (the SDK probes with HEAD); a
    full disk or an oversized request is something the operator may need to act on."""
    if status >= 500 or status in (413, 429, 507):
        return logging.WARNING
    return logging.DEBUG if status == 404 else logging.INFO


def make_serializer(node_id):
    def serialize(req, resp, ex):
        status = ex.status_code
        log.log(_log_level(status), "refused %s %r from %s: %d %s", req.method, req.path,
                req.remote_addr, status, ex.description or ex.title)
        body = {}
        tcode = getattr(ex, "tcode", "")
        if tcode:
            body["tcode"] = tcode
        body.update(message=ex.description or ex.title, method=req.method, url_path=req.path,
                    remote_addr=req.remote_addr or "", caller="", node=node_id, status=status)
        resp.content_type = "application/json"
        resp.set_header("X-Content-Type-Options", "nosniff")
        if status in (429, 503) and not resp.get_header("Retry-After"):
            resp.set_header("Retry-After", retry_after())   # Falcon's own, if ever
        resp.stream = None
        if req.method == "HEAD":
            # HEAD has no body; AIS puts the error into a header instead (ASCII JSON: a
            # header cannot carry every character a name may hold)
            resp.set_header("Hdr-Error", json.dumps(body))
            resp.data = None
        else:
            resp.data = _enc.encode(body) + b"\n"
    return serialize
