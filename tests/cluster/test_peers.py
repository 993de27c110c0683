"""The peer client (cluster/peers.py) against a small real HTTP/1.1 server in a thread: one
kept-alive connection per peer carrying the secret (over TLS too, with the node's client
certificate), a connection the peer closed while idle replaced without the call failing,
request bodies sent with a length or chunked, a chunked answer streamed, and a peer that
cannot be reached reported as PeerUnavailable."""
import io
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from getbatch.cluster.devcerts import DevCA
from getbatch.cluster.peers import SECRET_HEADER, PeerUnavailable, Peers, address
from getbatch.cluster.peerstream import PeerRefused, PeerStream
from getbatch.cluster.peer_backend import Body
from getbatch.cluster.smap import NodeInfo
from getbatch.tls import ClientTLS


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _body(self):
        if self.headers.get("Transfer-Encoding") == "chunked":
            data = b""
            while (size := int(self.rfile.readline().split(b";")[0], 16)):
                data += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return data
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _answer(self, body, close=False):
        self.server.seen.append((self.command, self.path, self.client_address[1],
                                 self.headers.get(SECRET_HEADER)))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if close:   # drop the connection without saying so: the client's pooled one is dead
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True

    def do_GET(self):
        if self.path == "/chunked":
            self.server.seen.append((self.command, self.path, self.client_address[1], None))
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (b"abc", b"defgh"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            return
        self._answer(b"pong", close=self.path == "/close")

    def do_PUT(self):
        self._answer(b"%d:%s" % (len(body := self._body()), body[:8]))


def _serve(tls=None):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.seen = []
    if tls is not None:
        srv.socket = tls.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    scheme = "https" if tls is not None else "http"
    return srv, NodeInfo("p1", f"{scheme}://127.0.0.1:{srv.server_address[1]}")


@pytest.fixture
def peer():
    srv, node = _serve()
    yield srv, node
    srv.shutdown()
    srv.server_close()


def test_calls_share_one_connection_and_carry_the_secret(peer):
    srv, node = peer
    peers = Peers("s3cret")
    try:
        for _ in range(3):
            r = peers.request(node, "GET", "/ping", params={"a": "x y"})
            assert (r.status_code, r.content) == (200, b"pong")
        assert [s[1] for s in srv.seen] == ["/ping?a=x+y"] * 3
        assert len({s[2] for s in srv.seen}) == 1   # one client port: kept alive
        assert {s[3] for s in srv.seen} == {"s3cret"}
    finally:
        peers.close()


def test_https_calls_share_one_connection_and_show_the_client_certificate(tmp_path):
    ca = DevCA(tmp_path)
    server, client = ca.issue("server"), ca.issue("client")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(server.cert, server.key)
    tls.load_verify_locations(cafile=ca.cert)
    tls.verify_mode = ssl.CERT_REQUIRED   # no client certificate, no answer
    srv, node = _serve(tls)
    peers = Peers("s", tls=ClientTLS(ca.cert, client.cert, client.key))
    try:
        for _ in range(3):
            assert peers.request(node, "GET", "/ping").content == b"pong"
        assert len({s[2] for s in srv.seen}) == 1   # one TLS connection, kept alive
        with pytest.raises(PeerUnavailable):        # the CA is checked: not the system's
            Peers("s").request(node, "GET", "/ping")
    finally:
        peers.close()
        srv.shutdown()
        srv.server_close()


def test_a_connection_the_peer_closed_while_idle_is_replaced(peer):
    srv, node = peer
    peers = Peers("s")
    try:
        assert peers.request(node, "GET", "/close").content == b"pong"
        assert peers.request(node, "GET", "/ping").content == b"pong"
        assert srv.seen[0][2] != srv.seen[1][2]   # a new connection for the second call
    finally:
        peers.close()


def test_bodies_with_a_length_or_chunked_and_a_chunked_answer(peer):
    _, node = peer
    peers = Peers("s")
    try:
        data = b"0123456789" * 1000
        r = peers.request(node, "PUT", "/o", data=Body(io.BytesIO(data), 25))
        assert r.content == b"25:01234567"
        r = peers.request(node, "PUT", "/o", data=iter([b"ab", b"", b"cd"]))
        assert r.content == b"4:abcd"
        r = peers.request(node, "GET", "/chunked", stream=True)
        assert b"".join(r.iter_content(4)) == b"abcdefgh"
        assert peers.request(node, "GET", "/ping").content == b"pong"
    finally:
        peers.close()


def test_a_peer_that_cannot_be_reached_is_unavailable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]   # bound, not listening: connections are refused
        peers = Peers("s")
        with pytest.raises(PeerUnavailable, match=r"peer p1 at http://127.0.0.1:\d+ is "
                                                  r"unreachable \(Connection refused\)"):
            peers.request(NodeInfo("p1", f"http://127.0.0.1:{port}"), "GET", "/ping")


def _read_request(conn):
    """A whole request (head and Content-Length body) from `conn`, or what came before EOF."""
    data = b""
    while b"\r\n\r\n" not in data:
        got = conn.recv(65536)
        if not got:
            return data
        data += got
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(body) < length:
        got = conn.recv(65536)
        if not got:
            break
        body += got
    return head + b"\r\n\r\n" + body


def test_a_sub_batch_whose_pooled_connection_closes_unanswered_is_sent_again_whole():
    # the peer takes the sub-batch on an idle kept-alive connection and closes it without an
    # answer (its keep-alive ended as the request came): the stream sends it again on a new
    # connection, whole (it once sent an empty request and then waited out max_wait)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(2)
        node = NodeInfo("p1", f"http://127.0.0.1:{listener.getsockname()[1]}")
        received = []

        def serve():
            first, _ = listener.accept()
            received.append(_read_request(first))
            first.close()
            second, _ = listener.accept()
            received.append(_read_request(second))
            second.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")
            second.close()

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        peers = Peers("s")
        peers.give_back(address(node.url), peers.connect(address(node.url), 5))
        stream = PeerStream(node, [0], b'{"in": []}', peers, timeout=10)
        try:
            stream.send()
            with pytest.raises(PeerRefused) as refused:
                stream.read_plan()
            assert refused.value.status == 503
        finally:
            stream.close()
            peers.close()
        server.join(10)
        assert len(received) == 2 and received[0] == received[1]
        assert received[1].endswith(b'\r\n\r\n{"in": []}')
