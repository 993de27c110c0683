"""Bucket API: create/destroy (POST/DELETE with an ActionMsg), HEAD, list buckets, list objects.

Object listing is msgpack with Go field names, as the AIS SDK 2.0.0 requires
(`Content-Type: application/msgpack` exactly, a non-empty UUID, `ContinuationToken`
empty on the last page).
"""
import uuid

import falcon
import msgpack
import msgspec

from ..batch.request import normalize_provider
from ..store.names import validate_bucket_name
from .errors import HTTPError

_json = msgspec.json.Decoder()
_enc = msgspec.json.Encoder()


def read_action(req):
    """The ActionMsg of a bucket request ({"action":..., "value":...}), {} if there is none."""
    body = req.bounded_stream.read()
    if not body.strip():
        return {}
    try:
        msg = _json.decode(body)
    except msgspec.DecodeError as exc:
        raise HTTPError(400, f"malformed JSON request body: {exc}")
    if not isinstance(msg, dict):
        raise HTTPError(400, "malformed request body: expecting a JSON object (ActionMsg)")
    return msg


def ais_bucket(req, bucket):
    """Validate the bucket name and the provider query; only `ais` buckets live here."""
    validate_bucket_name(bucket)
    provider = normalize_provider(req.get_param("provider") or "ais")
    if provider != "ais":
        raise HTTPError(404, f'bucket "{provider}://{bucket}" does not exist', "ErrRemoteBckNotFound")
    return bucket


class BucketCollection:
    """GET /v1/buckets: the bucket list (JSON, `[]` when there is none)."""

    def __init__(self, store):
        self.store = store

    def on_get(self, req, resp):
        read_action(req)
        provider = req.get_param("provider") or ""
        names = self.store.list_buckets() if provider in ("", "ais") else []
        resp.content_type = "application/json"
        resp.data = _enc.encode([{"name": n, "provider": "ais", "namespace": {"uuid": "", "name": ""}}
                                 for n in names])


class Bucket:
    """/v1/buckets/<bucket>."""

    def __init__(self, store):
        self.store = store

    def on_post(self, req, resp, bucket):
        bucket = ais_bucket(req, bucket)
        action = read_action(req).get("action")
        if action == "create-bck":
            self.store.create_bucket(bucket)
        elif action == "destroy-bck":
            self.store.destroy_bucket(bucket)
        else:
            raise HTTPError(400, f'unsupported bucket action "{action}" on ais://{bucket} '
                                 '(supported: create-bck, destroy-bck)')
        resp.status = 200

    def on_delete(self, req, resp, bucket):
        bucket = ais_bucket(req, bucket)
        action = read_action(req).get("action", "destroy-bck")
        if action != "destroy-bck":
            raise HTTPError(400, f'unsupported bucket action "{action}" on ais://{bucket} '
                                 '(supported: destroy-bck)')
        self.store.destroy_bucket(bucket)
        resp.status = 200

    def on_head(self, req, resp, bucket):
        bucket = ais_bucket(req, bucket)
        self.store.require_bucket(bucket)
        resp.set_header("Ais-Bucket-Props", '{"provider":"ais"}')
        resp.status = 200

    def on_get(self, req, resp, bucket):
        bucket = ais_bucket(req, bucket)
        msg = read_action(req)
        action = msg.get("action", "list")
        if action != "list":
            raise HTTPError(400, f'unsupported bucket action "{action}" on ais://{bucket} (supported: list)')
        lso = msg.get("value") or {}
        if not isinstance(lso, dict):
            raise HTTPError(400, "malformed list-objects request: \"value\" must be an object")
        self.store.require_bucket(bucket)
        page_size = lso.get("pagesize") or 0
        if not isinstance(page_size, int) or page_size < 0:
            raise HTTPError(400, f"invalid pagesize {page_size!r}: expecting a non-negative integer")
        props = set((lso.get("props") or "name,size").split(","))
        entries, token = self.store.list_objects(
            bucket, prefix=lso.get("prefix") or "", page_size=page_size,
            token=lso.get("continuation_token") or "", start_after=lso.get("start_after") or "",
            with_meta=bool(props & {"checksum", "version"}))
        out = []
        for e in entries:
            d = {"n": e.name, "s": e.size}
            if "checksum" in props and e.cksum_value:
                d["cs"] = e.cksum_value
            if "version" in props and e.version:
                d["v"] = str(e.version)
            if "atime" in props:
                d["a"] = str(e.atime_ns)
            out.append(d)
        res = {"UUID": lso.get("uuid") or uuid.uuid4().hex, "ContinuationToken": token,
               "Entries": out, "Flags": 0}
        if "msgpack" in (req.get_header("Accept") or ""):
            resp.content_type = "application/msgpack"
            resp.data = msgpack.packb(res)
        else:
            resp.content_type = "application/json"
            resp.data = _enc.encode(res)
        resp.status = falcon.HTTP_200
