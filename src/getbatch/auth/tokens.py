"""Signed bearer tokens: issue one, verify one, and what it grants.

A token is a JWT in its HS256 shape, `b64url(header).b64url(payload).b64url(signature)`, the
signature an HMAC-SHA256 of the first two parts under the node's key. The header must say
exactly HS256: a token naming another algorithm (`none`, RS256, ...) is refused, whatever its
signature, so no one can choose how their token is checked. The payload carries

    {"sub": "alice", "iat": 1767225600, "exp": 1767229200,
     "perms": {"ais://images": "rw", "aws://*": "r", "*": "r"}}

and may carry `nbf` (not before). `exp` and `nbf` are honoured with a leeway of a few seconds
(setting `auth_leeway`) for clocks that differ between the issuer and the nodes.

`perms` maps a bucket scope to permission letters: `r` read (object GET/HEAD, listing,
GetBatch), `w` write (object PUT/append/DELETE), `a` admin (bucket create/destroy/props).
Letters do not imply one another (`rwa` grants everything). A scope is `<provider>://<bucket>`,
`<provider>://*` (every bucket of a provider) or `*` (every bucket); the grants of every
scope that matches a bucket add up.
"""
import base64
import hashlib
import hmac
import re
import time

import msgspec

from ..store.errors import StoreError
from ..store.names import validate_bucket_name
from ..store.providers import normalize_provider

READ, WRITE, ADMIN = "r", "w", "a"
PERMS = {READ: "read", WRITE: "write", ADMIN: "admin"}

_HEADER = {"alg": "HS256", "typ": "JWT"}
_B64URL_RE = re.compile(r"[A-Za-z0-9_-]*")
_enc = msgspec.json.Encoder()


class TokenError(Exception):
    """A token that grants nothing (an HTTP 401). The message says why, for the client and
    the operator; it never repeats the token."""


def _b64(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text, part):
    if not _B64URL_RE.fullmatch(text) or len(text) % 4 == 1:
        raise TokenError(f"malformed token: the {part} is not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(key, signing_input):
    return _b64(hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest())


def parse_scope(text):
    """The canonical scope for `text`: `*`, `<provider>://*` or `<provider>://<bucket>`; a
    bare bucket name means `ais://<bucket>` (provider aliases such as s3 are normalized).
    ValueError for anything else."""
    if text == "*":
        return "*"
    provider, sep, bucket = text.rpartition("://")
    try:
        provider = normalize_provider(provider if sep else "ais")
        if bucket != "*":
            validate_bucket_name(bucket)
    except StoreError as exc:
        raise ValueError(f"invalid bucket scope {text!r}: {exc}") from None
    return f"{provider}://{bucket}"


def _parse_letters(text, scope):
    if not isinstance(text, str) or not text or set(text) - set(PERMS):
        raise ValueError(f"invalid permissions {text!r} for {scope}: expecting letters of "
                         "r (read), w (write), a (admin), e.g. rw")
    return "".join(p for p in PERMS if p in text)


def parse_bucket_spec(spec):
    """`NAME:PERMS` as given to `getbatch token issue --bucket` (`images:rw`, `s3://raw:r`,
    `*:r`) -> (scope, letters). ValueError with a one-line reason."""
    scope, sep, letters = spec.rpartition(":")
    if not sep or not scope:
        raise ValueError(f"invalid bucket permission {spec!r}: expecting NAME:PERMS such as "
                         "images:rw, s3://raw:r or *:r")
    scope = parse_scope(scope)
    return scope, _parse_letters(letters, scope)


class Grant:
    """What a verified token allows: `sub` (the user), `exp` and `nbf` (unix seconds; nbf 0
    when the token has none) and per-scope permission letters."""

    __slots__ = ("sub", "exp", "perms", "nbf")

    def __init__(self, sub, exp, perms, nbf=0):
        self.sub = sub
        self.exp = exp
        self.perms = dict(perms)
        self.nbf = nbf

    def allows(self, provider, bucket, perm):
        """Whether `perm` (READ, WRITE or ADMIN) is granted on `provider`://`bucket`."""
        p = self.perms
        return (perm in p.get(f"{provider}://{bucket}", "") or perm in p.get(f"{provider}://*", "")
                or perm in p.get("*", ""))


def issue(key, sub, perms, ttl, now=None):
    """A token for user `sub` granting `perms` ({scope: letters}, validated) for `ttl`
    seconds from `now`."""
    if not isinstance(sub, str) or not sub:
        raise ValueError("a token needs a user name")
    if ttl <= 0:
        raise ValueError(f"invalid token lifetime {ttl!r}: must be more than 0 seconds")
    clean = {}
    for scope, letters in perms.items():
        scope = parse_scope(scope)
        clean[scope] = _parse_letters(letters, scope)
    iat = int(time.time() if now is None else now)
    payload = {"sub": sub, "iat": iat, "exp": iat + max(1, round(ttl)), "perms": clean}
    signing_input = _b64(_enc.encode(_HEADER)) + "." + _b64(_enc.encode(payload))
    return signing_input + "." + _sign(key, signing_input)


def _claims(raw):
    """The checked payload fields (sub, exp, perms, nbf); TokenError if one is missing or bad."""
    try:
        doc = msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        raise TokenError("malformed token: the payload is not JSON") from None
    if not isinstance(doc, dict):
        raise TokenError("malformed token: the payload is not a JSON object")
    sub, exp, perms = doc.get("sub"), doc.get("exp"), doc.get("perms")
    if not isinstance(sub, str) or not sub:
        raise TokenError('malformed token: no user ("sub")')
    if type(exp) is not int:
        raise TokenError('malformed token: no expiry ("exp")')
    if not isinstance(perms, dict):
        raise TokenError('malformed token: no permissions ("perms")')
    nbf = doc.get("nbf", 0)
    if type(nbf) is not int:
        raise TokenError('malformed token: "nbf" (not before) must be an integer')
    clean = {}
    try:
        for scope, letters in perms.items():
            scope = parse_scope(scope)
            clean[scope] = _parse_letters(letters, scope)
    except ValueError as exc:
        raise TokenError(f"malformed token: {exc}") from None
    return sub, exp, clean, nbf


def verify(key, token, now=None, leeway=0.0):
    """The Grant of `token` if it is well formed, HS256-signed with `key` and valid now
    (`exp` and `nbf`, each with `leeway` seconds); TokenError otherwise."""
    if not token.isascii():
        # a JWT is base64url and dots; an HTTP header may bring any Latin-1 byte
        raise TokenError("malformed token: characters other than base64url and '.'")
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("malformed token: expecting three dot-separated parts (a JWT)")
    header_b64, payload_b64, sig_b64 = parts
    try:
        header = msgspec.json.decode(_unb64(header_b64, "header"))
    except (msgspec.DecodeError, RecursionError):
        raise TokenError("malformed token: the header is not JSON") from None
    if not isinstance(header, dict):
        raise TokenError("malformed token: the header is not a JSON object")
    alg = header.get("alg")
    if alg != "HS256" or header.get("typ", "JWT") != "JWT" or "crit" in header:
        raise TokenError(f"unsupported token: algorithm {alg!r} (this node accepts HS256 only)")
    # compare the text of the signature, so that only its one canonical encoding is accepted
    if not hmac.compare_digest(_sign(key, header_b64 + "." + payload_b64).encode(),
                               sig_b64.encode("ascii", "replace")):
        raise TokenError("invalid token: bad signature (issued with another key, or altered)")
    grant = Grant(*_claims(_unb64(payload_b64, "payload")))
    check_times(grant, now, leeway)
    return grant


def _utc(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def check_times(grant, now=None, leeway=0.0):
    """TokenError unless `grant` is valid at `now`, give or take `leeway` seconds: not
    expired, and not before its `nbf` (checked again for grants kept between requests)."""
    now = time.time() if now is None else now
    if now >= grant.exp + leeway:
        raise TokenError(f"token expired at {_utc(grant.exp)} (user {grant.sub!r}): ask for a "
                         "new one")
    if now < grant.nbf - leeway:
        raise TokenError(f"token not valid before {_utc(grant.nbf)} (user {grant.sub!r}): "
                         "check the clocks of the issuer and this node")
