"""TLS everywhere on a real 3-node cluster and a real etcd, on loopback, with certificates from
a throwaway CA (as `getbatch cluster --tls`): the nodes serve HTTPS, speak mutual TLS to each
other (requests sessions and the GetBatch peer streams) and to etcd; the SDK with the CA works;
a peer without a client certificate, or with one from another CA, is refused; plain HTTP to a
TLS port fails with a clean 400."""
import io
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tarfile

import pytest
import requests

from getbatch.cluster.devcerts import DevCA
from tests.support.nodes import make_client

from .nodes import Cluster

PEER_PING = "/v1/_peer/ping"


@pytest.fixture(autouse=True)
def _no_ca_bundle_override(monkeypatch):
    # requests prefers these to a session's `verify` (the SDK's ca_cert)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("tlscluster"), n=3, tls=True)
    yield c
    c.close()


def test_nodes_serve_https_and_advertise_https_urls(tls_cluster):
    smap = tls_cluster.smap(tls_cluster.urls[0])
    assert sorted(n["public_net"]["direct_url"] for n in smap["tmap"].values()) == \
        sorted(tls_cluster.urls)
    assert all(u.startswith("https://") for u in tls_cluster.urls)
    # a client that does not trust the CA is refused by its own check
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(tls_cluster.urls[0] + "/v1/health", timeout=5, verify=True)
    # readiness: every node is in its map
    for u in tls_cluster.urls:
        assert requests.get(u + "/v1/health", params={"readiness": "true"}, timeout=5,
                            verify=tls_cluster.ca).status_code == 200


def test_sdk_with_the_ca_and_a_getbatch_across_three_tls_nodes(tls_cluster):
    b = make_client(tls_cluster.urls[0], ca_cert=tls_cluster.ca).bucket("tlsdata")
    b.create(exist_ok=True)
    # enough objects that HRW spreads them over all three nodes; sizes on both sides of
    # the TLS record size and of the peer stream's window
    payloads = {f"o{i:02d}": os.urandom(i * 37_000 + i) for i in range(24)}
    for name, data in payloads.items():
        b.object(name).get_writer().put_content(data)
    assert b.object("o05").get_reader().read_all() == payloads["o05"]
    # a big object whole and a range of it (files go out through the TLS socket's sendfile)
    big = os.urandom((3 << 20) + 7)
    b.object("big").get_writer().put_content(big)
    for url in tls_cluster.urls[:2]:
        r = requests.get(url + "/v1/objects/tlsdata/big", timeout=30, verify=tls_cluster.ca)
        assert r.status_code == 200 and r.content == big
        r = requests.get(url + "/v1/objects/tlsdata/big", timeout=30, verify=tls_cluster.ca,
                         headers={"Range": "bytes=1000000-2999999"})
        assert r.status_code == 206 and r.content == big[1000000:3000000]
    names = sorted(payloads)
    for url in tls_cluster.urls:   # each node as the one that gathers
        c = make_client(url, ca_cert=tls_cluster.ca)
        got = {i.obj_name: data for i, data in c.batch(names, bucket=c.bucket("tlsdata")).get()}
        assert got == payloads
    # the same through the raw API, streamed: the TAR body over TLS (no zero-copy path)
    body = {"in": [{"objname": n} for n in names], "mime": ".tar", "strm": True}
    r = requests.get(tls_cluster.urls[1] + "/v1/ml/moss/tlsdata", json=body, timeout=60,
                      verify=tls_cluster.ca)
    assert r.status_code == 200, r.text
    with tarfile.open(fileobj=io.BytesIO(r.content)) as tar:
        assert [m.name.rsplit("/", 1)[-1] for m in tar.getmembers()] == names
        assert tar.extractfile(tar.getmembers()[-1]).read() == payloads[names[-1]]


def test_a_peer_needs_a_client_certificate_the_cluster_ca_signed(tls_cluster, tmp_path):
    url = tls_cluster.urls[0]
    secret = {"Getbatch-Cluster-Secret": tls_cluster.secret()}
    # with the cluster's certificate: a peer
    ok = requests.get(url + PEER_PING, headers=secret, timeout=5, **tls_cluster.http)
    assert ok.status_code == 200, ok.text
    # the secret without a client certificate: refused, and told why
    bare = requests.get(url + PEER_PING, headers=secret, timeout=5, verify=tls_cluster.ca)
    assert bare.status_code == 403
    assert "client certificate" in bare.json()["message"]
    # a certificate from another CA: the handshake itself fails
    other = DevCA(tmp_path / "other").issue("intruder")
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url + PEER_PING, headers=secret, timeout=5, verify=tls_cluster.ca,
                     cert=(other.cert, other.key))
    # an ordinary client without a certificate still reads (tls_client_auth is off)
    assert requests.get(url + "/v1/health", timeout=5, verify=tls_cluster.ca).status_code == 200


def test_plain_http_to_a_tls_node_fails_cleanly(tls_cluster):
    port = tls_cluster.nodes[0].port
    r = requests.get(f"http://127.0.0.1:{port}/v1/health", timeout=5)
    assert r.status_code == 400
    assert "HTTPS" in r.json()["message"]
    # a broken handshake: a TLS alert record at most, then the connection closes; the node
    # carries on
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"\x16\x03\x01\x00\x05hello")
        answer = s.recv(100)
        assert answer[:1] in (b"", b"\x15"), answer
    ctx = ssl.create_default_context(cafile=tls_cluster.ca)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 200")


def test_getbatch_cluster_tls_runs_the_development_cluster_over_tls(tmp_path):
    from getbatch.ports import free_ports

    from .test_devcluster import Output
    port = free_ports(2)
    p = subprocess.Popen([sys.executable, "-m", "getbatch.cli", "cluster", "--tls", "--nodes", "2",
                          "--port", str(port), "--data-dir", str(tmp_path / "dev")],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = Output(p.stdout)
    try:
        out.wait_for("Ctrl-C stops the cluster")
        text = "".join(out.lines)
        assert re.search(r"etcd at https://127\.0\.0\.1:\d+", text), text
        urls = re.findall(r"node \d: (https://\S+) ", text)
        assert urls == [f"https://127.0.0.1:{port}", f"https://127.0.0.1:{port + 1}"]
        ca = re.search(r"throwaway CA (\S+);", text).group(1)
        assert ca == str(tmp_path / "dev" / "tls" / "ca.pem")
        assert oct(os.stat(tmp_path / "dev" / "tls" / "node.key").st_mode & 0o777) == "0o600"
        b = make_client(urls[0], ca_cert=ca).bucket("dev")
        b.create()
        b.object("a").get_writer().put_content(b"over tls")
        assert make_client(urls[1], ca_cert=ca).bucket("dev").object("a").get_reader() \
            .read_all() == b"over tls"
        assert requests.get(urls[1].replace("https", "http") + "/v1/health",
                            timeout=5).status_code == 400
    finally:
        p.send_signal(signal.SIGINT)
        p.wait(timeout=60)


def test_tls_client_auth_asks_every_client_for_a_certificate_and_handshakes_have_a_deadline(
        tmp_path):
    from getbatch.cluster.devcluster import tls_flags
    from tests.support.nodes import Node, serve_argv
    _, _, http, ca = tls_flags(str(tmp_path))
    cert, key = http["cert"]
    node = Node(tmp_path / "data", tmp_path / "server.log", serve_argv(1, 2) + [
        "--tls-cert", cert, "--tls-key", key, "--tls-ca", ca, "--tls-client-auth",
        "--header-timeout", "1"], http=http)
    try:
        assert requests.get(node.url + "/v1/health", timeout=5, **http).status_code == 200
        with pytest.raises(requests.exceptions.SSLError):   # no certificate: no handshake
            requests.get(node.url + "/v1/health", timeout=5, verify=ca)
        # a client that starts no handshake, or stops in the middle of one, is closed after
        # header_timeout: it holds no thread, and not for long
        for hello in (b"", b"\x16\x03\x01\x02\x00\x01"):
            # (never closed: recv times out and the test fails; no elapsed-time bound that
            # a loaded machine could break)
            with socket.create_connection(("127.0.0.1", node.port), timeout=30) as s:
                s.sendall(hello)
                assert s.recv(100) == b""
    finally:
        node.stop()
