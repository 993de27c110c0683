"""What several resources read of a request: its body, bounded by max_body (a chunked one
too), the ActionMsg in it, and the bucket it names, routed to its backend."""
import msgspec

from ..store import validate_bucket_name
from .errors import AISError

_json = msgspec.json.Decoder()


def body_stream(req):
    """The request body as a stream: Falcon's bounded one, or for a chunked body (no
    Content-Length; Falcon would read it as empty) the server's own, which ends at the last
    chunk."""
    if req.content_length is None and "chunked" in (req.get_header("Transfer-Encoding") or ""):
        return req.stream
    return req.bounded_stream


def read_body(req, limit):
    """The request body, at most `limit` bytes (413 beyond it)."""
    if req.content_length is not None and req.content_length > limit:
        raise AISError(413, f"request body of {req.content_length} bytes is larger than the "
                            f"limit of {limit} bytes (setting max_body)")
    body = body_stream(req).read(limit + 1)
    if len(body) > limit:
        raise AISError(413, f"request body is larger than the limit of {limit} bytes "
                            "(setting max_body)")
    return body


def read_action(req, limit):
    """The ActionMsg of a bucket request ({"action":..., "value":...}), {} if there is none."""
    body = read_body(req, limit)
    if not body.strip():
        return {}
    try:
        msg = _json.decode(body)
    except msgspec.DecodeError as exc:
        raise AISError(400, f"malformed JSON request body: {exc}")
    if not isinstance(msg, dict):
        raise AISError(400, "malformed request body: expecting a JSON object (ActionMsg)")
    return msg


def bucket_backend(storage, req, bucket):
    """(backend, bucket): the name validated and routed by the `provider` query parameter."""
    validate_bucket_name(bucket)
    return storage.backend(req.get_param("provider") or "ais", bucket), bucket
