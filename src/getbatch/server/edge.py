"""The edge of a node: the one place a request's path is judged before anything else reads it.

Falcon's router strips every leading '/' (`//v1/_peer/ping` is routed as `/v1/_peer/ping`),
while the guards read `req.path` as it came: the intra-cluster guard (secret), auth, the
metrics. A path the router and a guard read differently is a way past the guard. So a node
serves a path only in its canonical form, the one every reader agrees on, and refuses any
other with a 400 rather than rewriting it (a rewrite is one more spelling to get wrong):

- exactly one leading '/', no empty segment (`/v1//x`, a trailing '/'), no `.` or `..`
  segment, decoded or not (`%2E%2E`);
- no percent-encoded '/' (`%2F`) in the route part, the segments before an object name
  (gunicorn decodes it, so `/v1%2F_peer/ping` would be `/v1/_peer/ping` to this node and
  something else to a front proxy); in an object name it stands for '/', as the SDK never
  sends it but other clients may.

Object names obey the same rules (store/names.py refuses empty and dot components), so no
valid object is lost. `/` alone is canonical.
"""
from .errors import AISError

_PATH_FIELD = ":path}"


def path_problem(path):
    """Why `path` (decoded, as PATH_INFO) is not canonical, or None."""
    if path == "/":
        return None
    if not path.startswith("/"):
        return "it does not start with '/'"
    for seg in path[1:].split("/"):
        if not seg:
            return "it has an empty segment ('//' or a trailing '/')"
        if seg in (".", ".."):
            return f"it has a {seg!r} segment"
    return None


def _raw_path(env):
    """The path as the client sent it (gunicorn's RAW_URI), or None where the server does
    not keep it."""
    raw = env.get("RAW_URI")
    if not raw:
        return None
    raw = raw.partition("?")[0].partition("#")[0]
    if not raw.startswith("/"):  # absolute form: http://host/path
        scheme, sep, rest = raw.partition("://")
        raw = "/" + rest.partition("/")[2] if sep else raw
    return raw


def _route_segments(template):
    """How many segments of `template` come before its `{...:path}` field (all of them when
    it has none)."""
    segs = template.lstrip("/").split("/")
    for i, seg in enumerate(segs):
        if seg.endswith(_PATH_FIELD):
            return i
    return len(segs)


def _refuse(req, why):
    raise AISError(400, f"invalid URL path {req.path!r}: {why}; this node serves paths only "
                        "in their canonical form")


class CanonicalPath:
    """Falcon middleware, the first of every node: refuses a non-canonical path before any
    guard or the router reads it."""

    def process_request(self, req, resp):
        why = path_problem(req.path)
        if why is not None:
            _refuse(req, why)

    def process_resource(self, req, resp, resource, params):
        raw = _raw_path(req.env)
        if raw is None or "%2f" not in raw.lower():
            return
        template = req.uri_template or ""
        route = raw.lstrip("/").split("/")[:_route_segments(template) if template else None]
        if any("%2f" in seg.lower() for seg in route):
            _refuse(req, "a percent-encoded '/' (%2F) where the route is named")
