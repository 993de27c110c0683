"""Bearer-token authentication and per-bucket authorization of requests (setting `auth`).

`AuthMiddleware` runs on every request when auth is on: it verifies the token of
`Authorization: Bearer <token>` (as the AIS SDK sends it from `Client(token=...)` or
`AIS_AUTHN_TOKEN`) before routing, and then checks the permission that `ROUTES` gives the
matched route. Every decision about a bucket goes through `authorize`, which resources (the
bucket list, GetBatch entries) and the cluster call too. With auth off no middleware is
installed and `authorize` allows everything.

401 = no usable token (missing, malformed, altered, signed with another key, expired);
403 = a valid token without the permission. Both are AIS-shaped bodies (the SDK raises
`AISError` with that status), decided before anything about the bucket is looked up, so a
token without permission cannot learn whether a bucket exists.
"""
import logging

from ..archive.lru import LRU
from ..cluster.peers import PEER_PREFIX
from ..auth.tokens import ADMIN, PERMS, READ, WRITE, TokenError, check_times, verify
from ..store import normalize_provider
from .errors import AISError

log = logging.getLogger("getbatch.server")

# Any valid token; what the request names is checked by the resource (GetBatch entries, the
# bucket list shows readable buckets only, jobs are shown by their bucket: server/jobs.py).
AUTHENTICATED = "authenticated"
# Admin permission on every bucket (a token with `*:a`): what acts on the whole cluster.
CLUSTER_ADMIN = "cluster-admin"

# The one table of what each route needs: a permission on its {bucket}, or AUTHENTICATED.
# /v1/health is open (readiness probes send no token). The cluster map needs a token but no
# bucket permission: the SDK reads it with the same client (is_ready(), direct reads), and it
# names the nodes' addresses, which is no business of someone without a token.
ROUTES = {
    ("/v1/buckets", "GET"): AUTHENTICATED,
    # create-bck, destroy-bck, and the multi-object jobs (prefetch, delete, evict): acting on a
    # whole selection of a bucket's objects is bucket administration
    ("/v1/buckets/{bucket}", "POST"): ADMIN,
    ("/v1/buckets/{bucket}", "DELETE"): ADMIN,
    ("/v1/buckets/{bucket}", "PATCH"): ADMIN,       # set-bprops (mirror copies)
    ("/v1/buckets/{bucket}", "HEAD"): READ,         # existence and props, read-only
    ("/v1/buckets/{bucket}", "GET"): READ,          # list objects
    ("/v1/objects/{bucket}/{obj:path}", "GET"): READ,
    ("/v1/objects/{bucket}/{obj:path}", "HEAD"): READ,
    ("/v1/objects/{bucket}/{obj:path}", "PUT"): WRITE,   # whole, append and flush
    ("/v1/objects/{bucket}/{obj:path}", "DELETE"): WRITE,
    ("/v1/ml/moss", "GET"): AUTHENTICATED,          # READ on every entry's bucket (Moss)
    ("/v1/ml/moss/{bucket}", "GET"): READ,          # and READ on every entry's bucket
    ("/v1/ml/moss/{bucket}/{extra:path}", "GET"): READ,
    ("/v1/ml/epochs", "GET"): AUTHENTICATED,        # plan ids and specs (no data)
    ("/v1/ml/epochs", "POST"): AUTHENTICATED,       # and READ on the plan's bucket
    ("/v1/ml/epochs/{plan_id}", "GET"): AUTHENTICATED,
    ("/v1/ml/epochs/{plan_id}", "DELETE"): AUTHENTICATED,   # and ADMIN on its bucket
    ("/v1/daemon", "GET"): AUTHENTICATED,
    ("/v1/cluster", "GET"): AUTHENTICATED,          # jobs: only those of permitted buckets
    ("/v1/cluster", "PUT"): AUTHENTICATED,          # stop a job: as above
    ("/v1/config", "GET"): AUTHENTICATED,           # runtime settings (no secrets shown)
    ("/v1/config", "PUT"): AUTHENTICATED,           # and `*:a` (server/config_api.py)
    ("/v1/cluster/{action}", "PUT"): AUTHENTICATED,  # set-config, reset-config: as above
    ("/v1/jobs", "GET"): AUTHENTICATED,             # GetBatch jobs of readable buckets
    ("/v1/rebalance", "GET"): AUTHENTICATED,        # progress
    ("/v1/rebalance", "POST"): CLUSTER_ADMIN,       # moves every node's data, at any rate
    ("/v1/rebalance", "DELETE"): CLUSTER_ADMIN,     # stops it
}
# /metrics: Prometheus scrapes without a token by default, and the series name no bucket
OPEN_PATHS = frozenset({"/v1/health", "/metrics"})


def _exempt(path):
    """Paths that need no user token: readiness, and the intra-cluster routes, which carry
    the cluster secret instead (PeerGuard, which runs first, refuses them without it)."""
    return path in OPEN_PATHS or path.startswith(PEER_PREFIX + "/")

_VERIFIED_TOKENS = 1024   # per app (its AuthMiddleware's)
_VERBS = {READ: "read", WRITE: "write to", ADMIN: "administer"}
_CHALLENGE = 'Bearer realm="getbatch"'


def _unauthorized(message, bad_token):
    challenge = _CHALLENGE + (', error="invalid_token"' if bad_token else "")
    return AISError(401, message, headers={"WWW-Authenticate": challenge})


def _bearer(req):
    """The token of the request's Authorization header; 401 if there is none."""
    header = req.get_header("Authorization")
    if not header:
        raise _unauthorized("authentication required: send a bearer token (the AIS SDK sends "
                            "Client(url, token=...) or AIS_AUTHN_TOKEN; an operator issues "
                            "tokens with `getbatch token issue`)", False)
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("malformed Authorization header: expecting \"Bearer <token>\"", True)
    return token


def grant_of(req):
    """The Grant the request's token carries, None when auth is off."""
    return getattr(req.context, "grant", None)


def permits(req, provider, bucket, perm):
    """Whether the request may use `perm` on `provider`://`bucket` (always, with auth off)."""
    grant = grant_of(req)
    return grant is None or grant.allows(provider, bucket, perm)


def authorize(req, provider, bucket, perm):
    """Raise a 403 unless the request may use `perm` (READ, WRITE, ADMIN) on
    `provider`://`bucket`."""
    grant = grant_of(req)
    if grant is not None and not grant.allows(provider, bucket, perm):
        raise AISError(403, f"user {grant.sub!r} may not {_VERBS[perm]} bucket {provider}://"
                            f"{bucket}: the token lacks {PERMS[perm]} permission on it")


def is_cluster_admin(req):
    """Whether the request may act on the whole cluster (always, with auth off)."""
    grant = grant_of(req)
    return grant is None or ADMIN in grant.perms.get("*", "")


def require_cluster_admin(req, what):
    """Raise a 403 unless the request's token has admin permission on every bucket; `what`
    says what the request would do (\"change the configuration\")."""
    if not is_cluster_admin(req):
        raise AISError(403, f"user {grant_of(req).sub!r} may not {what}: that needs admin "
                            "permission on every bucket (*:a)")


def authorize_entries(req, entries):
    """READ on the bucket of each parsed GetBatch entry (each bucket checked once)."""
    if grant_of(req) is None:
        return
    for provider, bucket in dict.fromkeys((e.provider, e.bucket) for e in entries):
        authorize(req, provider, bucket, READ)


class AuthMiddleware:
    """Falcon middleware: authenticate before routing, authorize the matched route."""

    def __init__(self, key, leeway=0.0):
        self.key = key
        self.leeway = leeway
        # token text -> its Grant: a client sends the same token with every request;
        # verifying it (HMAC, JSON, scopes) measured 30 us, finding a kept one 5 us. Only
        # tokens that verified are kept; their times are checked on every use.
        self._verified = LRU(_VERIFIED_TOKENS)

    def process_request(self, req, resp):
        if _exempt(req.path):
            return
        token = _bearer(req)
        try:
            grant = self._verified.get(token)
            if grant is None:
                grant = verify(self.key, token, leeway=self.leeway)
                self._verified.put(token, grant)
            else:
                check_times(grant, leeway=self.leeway)
        except TokenError as exc:
            raise _unauthorized(str(exc), True) from None
        req.context.grant = grant

    def process_resource(self, req, resp, resource, params):
        if _exempt(req.path):
            return
        need = ROUTES.get((req.uri_template, req.method))
        if need is None:
            if hasattr(resource, "on_" + req.method.lower()):
                # a responder nobody gave a rule: refuse rather than serve it unchecked
                log.error("no permission rule for %s %s in server/auth.py ROUTES: refused",
                          req.method, req.uri_template)
                raise AISError(403, f"{req.method} {req.path} is not allowed: no permission "
                                    "rule for this route")
            return  # Falcon answers it itself (405, OPTIONS)
        if need is CLUSTER_ADMIN:
            require_cluster_admin(req, f"{req.method} {req.path}")
        elif need is not AUTHENTICATED:
            authorize(req, normalize_provider(req.get_param("provider") or "ais"),
                      params["bucket"], need)
