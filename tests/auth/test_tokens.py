"""Tokens: what they grant, and every way a token can be refused (without a server)."""
import base64
import hashlib
import hmac
import json

import pytest

from getbatch.auth.keys import signing_key
from getbatch.auth.tokens import (ADMIN, READ, WRITE, TokenError, issue, parse_bucket_spec,
                                  verify)
from getbatch.config import Config, ConfigError

KEY = b"k" * 32
NOW = 1_800_000_000


def b64(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def forge(header, payload, key=KEY):
    """A token built by hand (independently of `issue`), signed with `key`."""
    signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(payload).encode())
    sig = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(sig)


GOOD = {"sub": "alice", "iat": NOW, "exp": NOW + 60, "perms": {"ais://b": "r"}}


def test_issue_verify_round_trip_and_scopes():
    tok = issue(KEY, "alice", {"b1": "rw", "s3://raw": "r", "ht://*": "r", "ais://adm": "a"},
                3600, now=NOW)
    g = verify(KEY, tok, now=NOW + 3599)
    assert g.sub == "alice" and g.exp == NOW + 3600
    assert g.perms == {"ais://b1": "rw", "aws://raw": "r", "ht://*": "r", "ais://adm": "a"}
    assert g.allows("ais", "b1", READ) and g.allows("ais", "b1", WRITE)
    assert not g.allows("ais", "b1", ADMIN) and not g.allows("aws", "b1", READ)
    assert g.allows("aws", "raw", READ) and not g.allows("aws", "raw", WRITE)
    assert g.allows("ht", "anything", READ) and not g.allows("ais", "other", READ)
    assert g.allows("ais", "adm", ADMIN) and not g.allows("ais", "adm", READ)
    star = verify(KEY, issue(KEY, "bob", {"*": "r", "ais://w": "w"}, 60, now=NOW), now=NOW)
    assert star.allows("gcp", "x", READ) and not star.allows("gcp", "x", WRITE)
    assert star.allows("ais", "w", READ) and star.allows("ais", "w", WRITE)   # grants add up


def test_the_hand_built_token_is_accepted():
    """The format is the documented JWT HS256 one, not only what `issue` happens to write."""
    g = verify(KEY, forge({"alg": "HS256", "typ": "JWT"}, GOOD), now=NOW)
    assert g.sub == "alice" and g.allows("ais", "b", READ)
    assert verify(KEY, forge({"alg": "HS256"}, GOOD), now=NOW).sub == "alice"


@pytest.mark.parametrize("now,ok", [(NOW + 59, True), (NOW + 60, False), (NOW + 10**6, False)])
def test_expiry(now, ok):
    tok = forge({"alg": "HS256", "typ": "JWT"}, GOOD)
    if ok:
        verify(KEY, tok, now=now)
    else:
        with pytest.raises(TokenError, match="expired"):
            verify(KEY, tok, now=now)


def _tamper_payload(tok):
    h, p, s = tok.split(".")
    payload = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
    payload["perms"] = {"*": "rwa"}
    return f"{h}.{b64(json.dumps(payload).encode())}.{s}"


def _last_char(tok):
    return tok[:-1] + ("A" if tok[-1] != "A" else "B")


BAD = [
    ("", "three"),
    ("abc", "three"),
    ("a.b", "three"),
    ("a.b.c.d", "three"),
    ("!!!.e30.sig", "base64url"),
    (b64(b"not json") + ".e30.sig", "not JSON"),
    (b64(b"[1]") + ".e30.sig", "not a JSON object"),
    # alg confusion: none, an asymmetric alg, a header that does not say HS256
    (forge({"alg": "none", "typ": "JWT"}, GOOD).rsplit(".", 1)[0] + ".", "algorithm 'none'"),
    (forge({"alg": "RS256", "typ": "JWT"}, GOOD), "algorithm 'RS256'"),
    (forge({"alg": "hs256", "typ": "JWT"}, GOOD), "algorithm"),
    (forge({"typ": "JWT"}, GOOD), "algorithm None"),
    (forge({"alg": "HS256", "typ": "JWE"}, GOOD), "algorithm"),
    (forge({"alg": "HS256", "crit": ["exp"]}, GOOD), "algorithm"),
    (forge({"alg": "HS256"}, GOOD, key=b"x" * 32), "bad signature"),
    (_tamper_payload(forge({"alg": "HS256"}, GOOD)), "bad signature"),
    (_last_char(forge({"alg": "HS256"}, GOOD)), "bad signature"),
    (forge({"alg": "HS256"}, GOOD).rsplit(".", 1)[0] + ".", "bad signature"),
    (forge({"alg": "HS256"}, GOOD) + "=", "bad signature"),
    (forge({"alg": "HS256"}, dict(GOOD, sub="")), "no user"),
    (forge({"alg": "HS256"}, {k: v for k, v in GOOD.items() if k != "exp"}), "no expiry"),
    (forge({"alg": "HS256"}, dict(GOOD, exp=str(NOW + 60))), "no expiry"),
    (forge({"alg": "HS256"}, dict(GOOD, exp=True)), "no expiry"),
    (forge({"alg": "HS256"}, dict(GOOD, perms=["ais://b"])), "no permissions"),
    (forge({"alg": "HS256"}, dict(GOOD, perms={"ais://b": "rx"})), "invalid permissions"),
    (forge({"alg": "HS256"}, dict(GOOD, perms={"bad name!": "r"})), "invalid bucket scope"),
    (forge({"alg": "HS256"}, dict(GOOD, perms={"zzz://b": "r"})), "invalid bucket scope"),
    (forge({"alg": "HS256"}, [GOOD]), "not a JSON object"),
]


@pytest.mark.parametrize("token,words", BAD, ids=[w + str(i) for i, (_, w) in enumerate(BAD)])
def test_bad_tokens_are_refused_with_a_reason(token, words):
    with pytest.raises(TokenError, match=words.replace("(", r"\(")) as exc:
        verify(KEY, token, now=NOW)
    assert token[-20:] not in str(exc.value) or not token


def test_unicode_in_a_token_is_refused_not_crashed():
    tok = forge({"alg": "HS256"}, GOOD)
    with pytest.raises(TokenError):
        verify(KEY, tok[:-2] + "é", now=NOW)
    with pytest.raises(TokenError):
        verify(KEY, "é" + tok, now=NOW)


@pytest.mark.parametrize("spec,out", [
    ("images:rw", ("ais://images", "rw")), ("images:wr", ("ais://images", "rw")),
    ("s3://raw:r", ("aws://raw", "r")), ("aws://*:ra", ("aws://*", "ra")),
    ("*:rwa", ("*", "rwa")), ("a.b-c_d:a", ("ais://a.b-c_d", "a")),
])
def test_bucket_specs(spec, out):
    assert parse_bucket_spec(spec) == out


@pytest.mark.parametrize("spec", ["images", "images:", ":r", "images:x", "bad name:r",
                                  "nope://b:r", "images:read"])
def test_bad_bucket_specs(spec):
    with pytest.raises(ValueError):
        parse_bucket_spec(spec)


def test_issue_refuses_nonsense():
    for sub, perms, ttl in [("", {}, 60), ("a", {}, 0), ("a", {}, -5), ("a", {"b": "z"}, 60)]:
        with pytest.raises(ValueError):
            issue(KEY, sub, perms, ttl)


def test_signing_key_sources(tmp_path):
    f = tmp_path / "key"
    f.write_bytes(b"f" * 40 + b"\n")
    assert signing_key(Config(dict(auth_key_file=str(f)))) == b"f" * 40
    assert signing_key(Config(dict(auth_key="e" * 32))) == b"e" * 32
    for values, words in [({}, "no token signing key"),
                          (dict(auth_key="short"), "at least 32"),
                          (dict(auth_key="e" * 32, auth_key_file=str(f)), "not both"),
                          (dict(auth_key_file=str(tmp_path / "nope")), "cannot read")]:
        with pytest.raises(ConfigError, match=words):
            signing_key(Config(values))


def test_interoperates_with_an_independent_jwt_library():
    """joserfc (RFC 7519 implementation) reads our tokens, and we read its HS256 ones; its
    tokens with another HMAC algorithm under the same key are refused."""
    from joserfc import jwt
    from joserfc.jwk import OctKey

    key = OctKey.import_key(KEY)
    ours = jwt.decode(issue(KEY, "alice", {"b": "rw"}, 60, now=NOW), key)
    assert ours.header == {"alg": "HS256", "typ": "JWT"}
    assert ours.claims == {"sub": "alice", "iat": NOW, "exp": NOW + 60, "perms": {"ais://b": "rw"}}
    theirs = jwt.encode({"alg": "HS256", "typ": "JWT"}, GOOD, key)
    assert verify(KEY, theirs, now=NOW).allows("ais", "b", READ)
    for alg in ("HS384", "HS512"):
        other = jwt.encode({"alg": alg}, GOOD, key, algorithms=[alg])
        with pytest.raises(TokenError, match=f"algorithm '{alg}'"):
            verify(KEY, other, now=NOW)


@pytest.mark.parametrize("now,leeway,ok", [
    (NOW + 59, 0, True), (NOW + 60, 0, False), (NOW + 60, 5, True), (NOW + 65, 5, False),
    (NOW - 11, 0, False), (NOW - 10, 0, True), (NOW - 15, 5, True), (NOW - 16, 5, False),
])
def test_nbf_and_exp_with_leeway(now, leeway, ok):
    """nbf = NOW - 10, exp = NOW + 60: valid in [nbf - leeway, exp + leeway)."""
    tok = forge({"alg": "HS256"}, dict(GOOD, nbf=NOW - 10))
    if ok:
        assert verify(KEY, tok, now=now, leeway=leeway).nbf == NOW - 10
    else:
        with pytest.raises(TokenError, match="expired|not valid before"):
            verify(KEY, tok, now=now, leeway=leeway)


def test_a_kept_grant_is_checked_for_nbf_too():
    from getbatch.auth.tokens import check_times
    g = verify(KEY, forge({"alg": "HS256"}, dict(GOOD, nbf=NOW)), now=NOW)
    with pytest.raises(TokenError, match="not valid before"):
        check_times(g, now=NOW - 1)
    check_times(g, now=NOW - 1, leeway=1)


@pytest.mark.parametrize("nbf", ["soon", 1.5, True, None])
def test_bad_nbf_is_refused(nbf):
    with pytest.raises(TokenError, match="nbf"):
        verify(KEY, forge({"alg": "HS256"}, dict(GOOD, nbf=nbf)), now=NOW)


def test_non_ascii_anywhere_is_a_token_error():
    """A header value may bring any Latin-1 byte: in the payload it once raised
    UnicodeEncodeError while signing (a 500 on the server)."""
    h, p, s = forge({"alg": "HS256"}, GOOD).split(".")
    for bad in (f"{h}.{p[:-1]}\xe9.{s}", f"{h}.{p}\xff.{s}", f"{h}.{p}.{s}\u2603", f"\x80{h}.{p}.{s}"):
        with pytest.raises(TokenError, match="malformed"):
            verify(KEY, bad, now=NOW)


def test_pyjwt_agrees_on_nbf_and_exp():
    """PyJWT, with the same leeway, accepts and refuses the same tokens (it reads the clock
    itself: the claims are set around the real time)."""
    import time

    import jwt as pyjwt

    now = int(time.time())
    base = dict(GOOD, iat=now, exp=now + 600)
    cases = [(dict(base, nbf=now + 100), False), (dict(base, nbf=now + 2), True),
             (dict(base, nbf=now - 100), True), (dict(base, exp=now - 100), False),
             (dict(base, exp=now - 2), True)]
    for claims, valid in cases:
        tok = pyjwt.encode(claims, KEY, algorithm="HS256")
        try:
            verify(KEY, tok, leeway=10)
            ours = True
        except TokenError:
            ours = False
        try:
            pyjwt.decode(tok, KEY, algorithms=["HS256"], leeway=10)
            theirs = True
        except pyjwt.InvalidTokenError:
            theirs = False
        assert ours == theirs == valid, claims
