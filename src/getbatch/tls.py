"""TLS of a node: the context its listener serves HTTPS with, and the client side it speaks to
its peers and to etcd with.

Settings (config.py, docs/deploy.md): `tls_cert`/`tls_key` make the node serve HTTPS and are
also the client certificate it shows its peers; `tls_ca` is the CA its peers' certificates
(server and client side) are checked against; `tls_client_auth` asks every client for a
certificate signed by it; `etcd_ca`/`etcd_cert`/`etcd_key` are etcd's. `check(config)` finds
every mistake (a key without its certificate, an unreadable or world-readable key, a bad PEM,
an http:// advertise on an HTTPS node) as one ConfigError before any worker starts.
"""
from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter

from .config import ConfigError

MIN_VERSION = ssl.TLSVersion.TLSv1_2
# WSGI environ key the worker sets on HTTPS: True when the client showed a certificate that
# tls_ca verified (intra-cluster requests need one)
CLIENT_CERT = "getbatch.client_cert"


class TLSSettings(Protocol):
    """What TLS reads of a node's Config (config.py: the settings named above)."""
    tls_cert: str
    tls_key: str
    tls_ca: str
    tls_client_auth: bool
    etcd_ca: str
    etcd_cert: str
    etcd_key: str
    advertise: str


@dataclass(frozen=True)
class ClientTLS:
    """What a client side of the node presents and trusts: `ca` ("" for the system's CAs), and
    a client certificate `cert`/`key` ("" for none)."""
    ca: str = ""
    cert: str = ""
    key: str = ""

    def context(self) -> ssl.SSLContext:
        """An ssl.SSLContext for https:// URLs (hostnames checked)."""
        ctx = ssl.create_default_context(cafile=self.ca or None)
        ctx.minimum_version = MIN_VERSION
        if self.cert:
            ctx.load_cert_chain(self.cert, self.key or None)
        return ctx

    def adapter(self, **pool: Any) -> HTTPAdapter:
        """A requests HTTPAdapter (`pool`: its pool options) that trusts `ca` and shows the
        client certificate on every https:// request it sends."""
        return _PinnedAdapter(self, **pool)


class _PinnedAdapter(HTTPAdapter):
    """The node's CA and certificate, whatever the environment says: requests lets
    REQUESTS_CA_BUNDLE override a session's `verify`."""

    def __init__(self, tls: ClientTLS, **pool: Any) -> None:
        self._verify = tls.ca or None
        self._cert = (tls.cert, tls.key) if tls.cert else None
        super().__init__(**pool)

    # the keyword arguments pass through as sent: the base's named ones are not restated
    def send(self, request: PreparedRequest, **kw: Any) -> Response:  # type: ignore[override]
        if self._verify:
            kw["verify"] = self._verify
        kw["cert"] = self._cert
        return super().send(request, **kw)


def peer_client(config: TLSSettings) -> ClientTLS:
    """The node's client side towards its peers: tls_ca, and its own certificate."""
    return ClientTLS(config.tls_ca, config.tls_cert, config.tls_key)


def etcd_client(config: TLSSettings) -> ClientTLS:
    return ClientTLS(config.etcd_ca, config.etcd_cert, config.etcd_key)


def server_context(config: TLSSettings) -> ssl.SSLContext | None:
    """The listener's ssl.SSLContext, or None when the node serves plain HTTP. With `tls_ca`
    a client certificate is checked when one is shown (peers show theirs) and, with
    `tls_client_auth`, required."""
    if not config.tls_cert:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = MIN_VERSION
    ctx.load_cert_chain(config.tls_cert, config.tls_key)
    if config.tls_ca:
        ctx.load_verify_locations(cafile=config.tls_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED if config.tls_client_auth else ssl.CERT_OPTIONAL
    return ctx


def check(config: TLSSettings) -> None:
    """Raise ConfigError for the first TLS setting that cannot work; else return."""
    _pair(config, "tls_cert", "tls_key")
    _pair(config, "etcd_cert", "etcd_key")
    if config.tls_client_auth and not config.tls_ca:
        raise ConfigError("tls_client_auth needs tls_ca (the CA client certificates are "
                          "checked against)")
    if config.tls_ca and not config.tls_cert:
        raise ConfigError("tls_ca is set but tls_cert is not: a node checks its peers' "
                          "certificates only when it serves HTTPS itself")
    if config.tls_cert and config.advertise.startswith("http://"):
        raise ConfigError(f"advertise {config.advertise} is http:// but the node serves HTTPS "
                          "(tls_cert): advertise an https:// URL")
    for name in ("tls_key", "etcd_key"):
        _private(config, name)
    for name in ("tls_ca", "etcd_ca"):
        if getattr(config, name):
            _load(name, getattr(config, name),
                  lambda path: ssl.create_default_context(cafile=path))
    _load("tls_cert", config.tls_cert, lambda _: server_context(config))
    _load("etcd_cert", config.etcd_cert, lambda _: etcd_client(config).context())


def _pair(config: TLSSettings, cert: str, key: str) -> None:
    if bool(getattr(config, cert)) != bool(getattr(config, key)):
        have, missing = (cert, key) if getattr(config, cert) else (key, cert)
        raise ConfigError(f"{have} is set but {missing} is not: set both or neither")


def _private(config: TLSSettings, name: str) -> None:
    path = getattr(config, name)
    if not path:
        return
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ConfigError(f"invalid {name} {path!r}: {exc.strerror}") from None
    if mode & 0o004:
        raise ConfigError(f"{name} {path!r} is readable by every user of the machine: "
                          f"chmod o-rwx {path} (0600 or 0640)")


def _load(name: str, path: str, load: Callable[[str], object]) -> None:
    if not path:
        return
    try:
        load(path)
    except FileNotFoundError as exc:
        raise ConfigError(f"invalid {name} {exc.filename or path!r}: no such file") from None
    except (OSError, ssl.SSLError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"invalid {name} {path!r}: cannot load it as PEM ({reason})") from None
