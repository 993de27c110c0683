"""TLS settings are checked before a node starts: each mistake is one ConfigError naming the
setting (and `getbatch serve` exits 2 with it); throwaway certificates load; the AIStore SDK's
head-only HTTPS request is recognised (and nothing else is)."""
import os
import subprocess
import sys

import pytest

from getbatch import tls
from getbatch.cluster.devcerts import DevCA
from getbatch.config import Config, ConfigError


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    ca = DevCA(tmp_path_factory.mktemp("certs"))
    return ca, ca.issue("node")


def test_a_good_setup_passes_and_builds_contexts(certs):
    ca, node = certs
    cfg = Config(dict(tls_cert=node.cert, tls_key=node.key, tls_ca=ca.cert, tls_client_auth=True,
                      etcd_ca=ca.cert, etcd_cert=node.cert, etcd_key=node.key,
                      advertise="https://127.0.0.1:5"))
    tls.check(cfg)
    assert tls.server_context(cfg).verify_mode.name == "CERT_REQUIRED"
    assert tls.server_context(cfg.replace(tls_client_auth=False)).verify_mode.name == "CERT_OPTIONAL"
    assert tls.server_context(Config()) is None
    assert tls.peer_client(cfg).context().check_hostname
    assert oct(os.stat(node.key).st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("change, words", [
    (dict(tls_key=None), "tls_cert is set but tls_key is not"),
    (dict(tls_cert=None, tls_ca=None), "tls_key is set but tls_cert is not"),
    (dict(tls_ca=None, tls_client_auth=True), "tls_client_auth needs tls_ca"),
    (dict(advertise="http://127.0.0.1:5"), "advertise an https:// URL"),
    (dict(etcd_cert="NODE"), "etcd_cert is set but etcd_key is not"),
    (dict(tls_ca="MISSING"), "invalid tls_ca"),
    (dict(tls_cert="CA"), "invalid tls_cert"),
])
def test_each_mistake_is_one_line_naming_the_setting(certs, tmp_path, change, words):
    ca, node = certs
    paths = {"NODE": node.cert, "CA": ca.cert, "MISSING": str(tmp_path / "nope.pem")}
    values = dict(tls_cert=node.cert, tls_key=node.key, tls_ca=ca.cert)
    for k, v in change.items():
        values[k] = paths.get(v, v) if v is not None else ""
    with pytest.raises(ConfigError) as err:
        tls.check(Config(values))
    assert words in str(err.value) and "\n" not in str(err.value)


def test_a_world_readable_key_is_refused_at_start(certs, tmp_path):
    _, node = certs
    loose = tmp_path / "loose.key"
    loose.write_bytes(open(node.key, "rb").read())
    loose.chmod(0o644)
    r = subprocess.run([sys.executable, "-m", "getbatch.cli", "serve", "--data-dir",
                        str(tmp_path / "d"), "--port", "1", "--tls-cert", node.cert,
                        "--tls-key", str(loose)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "tls_key" in r.stderr and "readable by every user" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_tls_node_advertises_https(certs):
    from getbatch.cluster.node import advertise_url
    _, node = certs
    tls_cfg = Config(dict(tls_cert=node.cert, tls_key=node.key, port=5))
    assert advertise_url(tls_cfg) == "https://127.0.0.1:5"
    assert advertise_url(Config(dict(port=5))) == "http://127.0.0.1:5"
    with pytest.raises(ValueError, match="--advertise https://HOST:PORT"):
        advertise_url(tls_cfg.replace(host="0.0.0.0"))


def test_the_sdk_head_only_request_is_told_where_to_send_its_body():
    from getbatch.server.conn import redirect_probe
    head = (b"PUT /v1/objects/b/xpid=1?provider=ais HTTP/1.1\r\nHost: n:5\r\n"
            b"Connection: close\r\nContent-Length: 10")
    assert redirect_probe(head) == ("n:5", "/v1/objects/b/xpid=1?provider=ais")
    assert redirect_probe(head.replace(b"?provider=ais", b"?provider=ais&pid=n1")) is None
    assert redirect_probe(head.replace(b"close", b"keep-alive")) is None
    assert redirect_probe(head.replace(b"Length: 10", b"Length: 0")) is None
