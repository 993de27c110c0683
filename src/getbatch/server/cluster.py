"""The cluster-map and health endpoints the SDK uses for `is_ready()` and direct reads.

A single node is proxy and target at once; its own URL is taken from the request.
"""
import time
import zlib

import msgspec

from .errors import AISError

_enc = msgspec.json.Encoder()
_started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _snode(node_id, kind, url, host, port):
    return {"daemon_id": node_id, "daemon_type": kind,
            "public_net": {"node_hostname": host, "daemon_port": str(port), "direct_url": url},
            "flags": 0, "id_digest": zlib.crc32(node_id.encode())}


class Daemon:
    """GET /v1/daemon?what=smap."""

    def __init__(self, node_id):
        self.node_id = node_id

    def on_get(self, req, resp):
        what = req.get_param("what")
        if what != "smap":
            raise AISError(400, f'unsupported daemon query what="{what}" (supported: smap)')
        url = req.prefix
        node = _snode(self.node_id, "target", url, req.host, req.port)
        proxy = _snode(self.node_id, "proxy", url, req.host, req.port)
        resp.content_type = "application/json"
        resp.data = _enc.encode({"tmap": {self.node_id: node}, "pmap": {self.node_id: proxy},
                                 "proxy_si": proxy, "version": 1, "uuid": "getbatch-single-node",
                                 "creation_time": _started})


class Health:
    """GET /v1/health: 200 once the process serves requests."""

    def on_get(self, req, resp):
        resp.status = 200
