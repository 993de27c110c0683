"""Every error leaves the server here, rendered as an AIS error body.

The AIS SDK picks its exception class by a regex over the body text (`ais://<b>` vs
`ais://<b>/<o>`) and the status, so messages keep AIS wording. Unexpected exceptions
are logged with their traceback for the operator and answered with a short 500 that
names the request, never with a traceback.
"""
import logging

import falcon
import msgspec

from ..archive import ArchiveError, MemberNotFound
from ..batch.errors import BatchError
from ..store import errors as se

log = logging.getLogger("getbatch.server")
_enc = msgspec.json.Encoder()

_STORE_STATUS = [
    (se.BucketNotFound, 404, "ErrBckNotFound"),
    (se.ObjectNotFound, 404, "ErrObjNotFound"),
    (se.BucketExists, 409, "ErrBckAlreadyExists"),
    (se.Conflict, 409, ""),
    (se.InvalidName, 400, ""),
    (se.BadAppendHandle, 400, ""),
    (se.IncompleteUpload, 400, ""),
    (se.StoreError, 400, ""),
]


class HTTPError(Exception):
    """Raised by resources for request errors that have no domain exception."""

    def __init__(self, status, message, tcode="", headers=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.tcode = tcode
        self.headers = headers or {}


def classify(ex):
    """(status, message, tcode) for an exception; None if it is unexpected."""
    if isinstance(ex, HTTPError):
        return ex.status, ex.message, ex.tcode
    if isinstance(ex, BatchError):
        return ex.status, ex.message, ""
    for cls, status, tcode in _STORE_STATUS:
        if isinstance(ex, cls):
            return status, str(ex), tcode
    if isinstance(ex, MemberNotFound):
        return 404, str(ex), "ErrObjNotFound"
    if isinstance(ex, ArchiveError):
        return 400, str(ex), ""
    if isinstance(ex, falcon.HTTPError):
        msg = ex.description or ex.title
        return ex.status_code, msg, ""
    return None


def make_handler(node_id):
    def handle(req, resp, ex, params):
        got = classify(ex)
        if got is None:
            log.exception("internal error serving %s %s", req.method, req.relative_uri)
            status, message, tcode = 500, f"internal error serving {req.method} {req.path}; see the server log", ""
        else:
            status, message, tcode = got
        if isinstance(ex, (falcon.HTTPError, HTTPError)):
            for k, v in (ex.headers or {}).items():
                resp.set_header(k, v)
        body = {}
        if tcode:
            body["tcode"] = tcode
        body.update(message=message, method=req.method, url_path=req.path,
                    remote_addr=req.remote_addr or "", caller="", node=node_id, status=status)
        data = _enc.encode(body) + b"\n"
        resp.status = status
        resp.content_type = "application/json"
        resp.set_header("X-Content-Type-Options", "nosniff")
        resp.stream = None
        if req.method == "HEAD":
            # HEAD has no body; AIS puts the error into a header instead
            resp.set_header("Hdr-Error", data.decode("utf-8", "replace").strip())
            resp.data = None
        else:
            resp.data = data
    return handle
