"""Every 429 and 503 carries a Retry-After that fits its cause (server/retryafter.py)."""
from getbatch.cluster.membership import LEASE_TTL
from getbatch.cluster.peers import PeerUnavailable
from getbatch.cluster.smap import NodeInfo
from getbatch.jobs import TooManyJobs
from getbatch.server.errors import AISError, to_ais_error
from getbatch.store import errors as se


def _answer(exc):
    err = to_ais_error(exc)
    return err.status_code, err.headers.get("Retry-After")


def test_each_refusal_says_when_to_ask_again():
    peer = NodeInfo("n1", "http://127.0.0.1:1")
    assert _answer(se.RemoteUnavailable("aws", "http://s3", "refused", "b", "o")) == (503, "1")
    assert _answer(PeerUnavailable(peer, "ConnectionRefusedError")) == (503, str(LEASE_TTL))
    assert _answer(se.Unavailable("cannot change bucket metadata now")) == (503, "2")
    assert _answer(TooManyJobs(64)) == (429, "2")
    # a caller's own headers are kept beside it; other statuses get none
    err = AISError(429, "busy", headers={"X-Why": "test"}, cause="batches")
    assert err.headers == {"X-Why": "test", "Retry-After": "1"}
    assert AISError(404, "gone").headers in (None, {})
