"""The edge's path handling (server/edge.py), in process: raw request bytes go through
gunicorn's own parser and environ builder, as under `getbatch serve`, into a node's app with a
cluster (so the intra-cluster routes exist). A recorder after every guard notes which route
each request reached. Whatever the path's spelling, a request reaches a /v1/_peer route only
with the cluster secret, and nothing a client sends is a 500."""
import gunicorn.config
import gunicorn.http.parser
import gunicorn.http.wsgi
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from getbatch.auth.tokens import issue
from getbatch.cluster.peers import PEER_PREFIX, SECRET_HEADER
from getbatch.cluster.smap import NodeInfo, Smap
from getbatch.config import Config
from getbatch.server.app import create_app
from getbatch.server.auth import OPEN_PATHS
from getbatch.server.edge import path_problem
from getbatch.store import LocalStore, Storage

from tests.cluster.inproc import SECRET, StaticCluster

_CFG = gunicorn.config.Config()
_SECRET = SECRET[SECRET_HEADER]


class _Reached:
    """Falcon middleware, last: the route of each request that got past every guard."""

    def __init__(self):
        self.templates = []

    def process_resource(self, req, resp, resource, params):
        if resource is not None:
            self.templates.append(req.uri_template)


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    root = tmp_path_factory.mktemp("edge")
    store = LocalStore(str(root / "data"))
    store.create_bucket("b")
    config = Config().replace(node_id="n0", data_dir=str(root / "data"))
    cluster = StaticCluster(Smap(1, [NodeInfo("n0", "http://127.0.0.1:9")], "n0"), {"b"})
    app = create_app(config, Storage({"ais": store}), cluster)
    reached = _Reached()
    app.add_middleware(reached)
    return app, reached, store


_KEY = "k" * 32


@pytest.fixture(scope="module")
def auth_node(tmp_path_factory):
    """The same with auth on: the token guard, then the route's permission."""
    root = tmp_path_factory.mktemp("edge-auth")
    store = LocalStore(str(root / "data"))
    store.create_bucket("b")
    config = Config().replace(node_id="n0", data_dir=str(root / "data"), auth=True,
                              auth_key=_KEY)
    cluster = StaticCluster(Smap(1, [NodeInfo("n0", "http://127.0.0.1:9")], "n0"), {"b"})
    app = create_app(config, Storage({"ais": store}), cluster)
    reached = _Reached()
    app.add_middleware(reached)
    return app, reached


def _serve(app, raw):
    """(status code, body) of the app for the request `raw` (bytes), or None when gunicorn
    refuses the request before any app sees it."""
    try:
        req = next(gunicorn.http.parser.RequestParser(_CFG, iter([raw]), ("127.0.0.1", 1)))
        _, env = gunicorn.http.wsgi.create(req, None, ("127.0.0.1", 1), ("127.0.0.1", 2), _CFG)
    except Exception:  # gunicorn's parse errors: answered 400 by gunicorn itself
        return None
    status = []
    body = app(env, lambda s, h, exc_info=None: status.append(int(s[:3])))
    try:
        data = b"".join(body)
    finally:
        getattr(body, "close", lambda: None)()
    return status[0], data


def _request(method, target, headers=()):
    lines = [f"{method} {target} HTTP/1.1", "Host: node"]
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode("latin-1")


@pytest.mark.parametrize("method,target", [
    ("GET", "//v1/_peer/ping"), ("GET", "///v1/_peer/buckets/b"), ("POST", "//v1/_peer/batch"),
    ("DELETE", "//v1/_peer/buckets/b"), ("GET", "/v1//_peer/ping"), ("GET", "/./v1/_peer/ping"),
    ("GET", "/v1/x/../_peer/ping"), ("GET", "/v1/%2E%2E/v1/_peer/ping"),
    ("GET", "/v1%2F_peer/ping"), ("GET", "/v1/_peer%2fping"), ("GET", "/v1/buckets/"),
    ("GET", "http://node//v1/_peer/ping"),
])
@pytest.mark.parametrize("secret", [False, True])
def test_odd_paths_are_400_and_reach_nothing(node, method, target, secret):
    """Refused at the edge, with or without the secret (an encoded '/' in the route part is
    judged after routing: without the secret the peer guard's 403 comes first)."""
    app, reached, store = node
    before = len(reached.templates)
    headers = [(SECRET_HEADER, _SECRET)] if secret else []
    status, body = _serve(app, _request(method, target, headers))
    if status == 403 and not secret and "%2f" in target.lower():
        assert b"intra-cluster" in body
    else:
        assert status == 400, body
        assert b"canonical" in body and b"invalid URL path" in body
    assert len(reached.templates) == before
    assert store.has_bucket("b")


def test_canonical_paths_still_route(node):
    app, reached, store = node
    assert _serve(app, _request("GET", "/v1/health"))[0] == 200
    assert _serve(app, _request("GET", PEER_PREFIX + "/ping", [(SECRET_HEADER, _SECRET)]))[0] == 200
    assert _serve(app, _request("GET", PEER_PREFIX + "/ping"))[0] == 403
    # an encoded '/' inside an object name is that name's '/'
    store.put("b", "d/o", __import__("io").BytesIO(b"data"))
    assert _serve(app, _request("GET", "/v1/objects/b/d%2Fo")) == (200, b"data")


def test_path_problem():
    assert path_problem("/") is None and path_problem("/v1/objects/b/a/b.tar") is None
    for bad in ("", "v1", "//v1", "/v1//x", "/v1/x/", "/v1/./x", "/v1/..", "/v1/.."):
        assert path_problem(bad) is not None, bad


_ROUTES = ["v1/_peer/ping", "v1/_peer/buckets/b", "v1/_peer/batch", "v1/_peer/objects/b/o",
           "v1/_peer/jobs", "v1/_peer/rebalance", "v1/_peer/push/b/o", "v1/buckets/b",
           "v1/objects/b/d/o", "v1/ml/moss", "v1/health", "v1/jobs", "v1/daemon"]
_PIECES = sorted({s for r in _ROUTES for s in r.split("/")} | {".", "..", "", "%", "%2F"})
_LEADS = ["/", "//", "///", "/./", "/../", "http://n/", "http://n//", "/%2F", ""]
_SEPS = ["/", "/", "/", "//", "/./", "/x/../", "%2F", "%2f", "/%2E/", "/%2e%2e/", "\\", "/;p/"]
_ENDS = ["", "", "/", "/.", "/..", "?x=1", "#f", ";p", "%00", "%", "/%20"]
_SECRET_HEADERS = st.sampled_from([
    (), ((SECRET_HEADER, _SECRET),), ((SECRET_HEADER.lower(), _SECRET),),
    ((SECRET_HEADER, "wrong"),), ((SECRET_HEADER, ""),), ((SECRET_HEADER, _SECRET + "x"),),
    ((SECRET_HEADER, _SECRET), (SECRET_HEADER, "other")),
    ((SECRET_HEADER.replace("-", "_"), _SECRET),), ((SECRET_HEADER, " " + _SECRET + " "),),
])


def _spelled(segment, how):
    """`segment` as written in a URL: as is, one character percent-encoded, or upper-cased."""
    if how == 1 and segment:
        return "".join(f"%{ord(c):02X}" if c in "_v" else c for c in segment)
    return segment.upper() if how == 2 else segment


@st.composite
def _paths(draw):
    """A route of the node, spelled oddly: doubled or dotted separators, encoded characters
    and slashes, absolute forms, odd ends; or, now and then, pieces of routes at random."""
    segs = draw(st.sampled_from(_ROUTES)).split("/")
    if draw(st.integers(0, 9)) == 0:
        segs = draw(st.lists(st.sampled_from(_PIECES), max_size=7))
    seps = [draw(st.sampled_from(_SEPS)) for _ in segs[1:]]
    spelled = [_spelled(s, draw(st.integers(0, 5))) for s in segs]
    path = "".join(s + sep for s, sep in zip(spelled, seps + [""]))
    return draw(st.sampled_from(_LEADS)) + path + draw(st.sampled_from(_ENDS))


def _carries_secret(headers):
    values = [v.strip() for k, v in headers if k.lower() == SECRET_HEADER.lower()]
    return values == [_SECRET]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]),
       path=_paths(), headers=_SECRET_HEADERS)
def test_fuzz_peer_routes_need_the_secret(node, method, path, headers):
    app, reached, _ = node
    before = len(reached.templates)
    answer = _serve(app, _request(method, path, headers))
    if answer is None:
        return
    status, body = answer
    peer = [t for t in reached.templates[before:] if t.startswith(PEER_PREFIX + "/")]
    if peer:
        assert _carries_secret(headers), (method, path, headers, peer)
    else:  # (the test's cluster is a partial double: a peer route may fail on it)
        assert status < 500, (path, body)


_TOKEN = issue(_KEY.encode(), "alice", {"b": "r"}, 3600)
_AUTH_HEADERS = st.sampled_from([
    (), (("Authorization", f"Bearer {_TOKEN}"),), (("authorization", f"bearer  {_TOKEN} "),),
    (("Authorization", "Bearer"),), (("Authorization", f"Basic {_TOKEN}"),),
    (("Authorization", f"Bearer {_TOKEN[:-1]}"),), (("Authorization", f"Bearer {_TOKEN}\xe9"),),
    (("Authorization", f"Bearer {_TOKEN[:20]}\xff{_TOKEN[21:]}"),),
    (("Authorization", f"Bearer {_TOKEN}"), ("Authorization", "Bearer x")),
    (("Authorization", f"Bearer {_TOKEN}"), (SECRET_HEADER, _SECRET)), ((SECRET_HEADER, _SECRET),),
])


def _valid_token(headers):
    values = [v.strip() for k, v in headers if k.lower() == "authorization"]
    return len(values) == 1 and values[0].split(None, 1)[-1].strip() == _TOKEN \
        and values[0].split()[0].lower() == "bearer"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE"]), path=_paths(),
       headers=_AUTH_HEADERS)
def test_fuzz_with_auth_every_route_but_the_open_ones_needs_a_token(auth_node, method, path,
                                                                     headers):
    """With auth on: a request without a valid token reaches only /v1/health and /metrics
    (and a peer route only with the secret), however its path and headers are spelled; a
    bad Authorization header is a 401, never a 500."""
    app, reached = auth_node
    before = len(reached.templates)
    answer = _serve(app, _request(method, path, headers))
    if answer is None:
        return
    status, body = answer
    for template in reached.templates[before:]:
        if template.startswith(PEER_PREFIX + "/"):
            assert _carries_secret(headers), (method, path, headers, template)
        elif template not in OPEN_PATHS:
            assert _valid_token(headers), (method, path, headers, template)
    if not reached.templates[before:]:
        assert status < 500, (path, headers, body)
