"""Bucket API: create/destroy (POST/DELETE with an ActionMsg), HEAD, list buckets, list objects
(listing.py).
"""
import logging

import falcon
import msgspec

from ..jobs import shardindex
from ..jobs.listrange import DELETE, EVICT, INDEX, PREFETCH, checked_selection, start_checked
from ..store import normalize_provider
from ..store.errors import StoreError
from ..auth.tokens import READ
from .auth import permits
from .errors import AISError
from .listing import list_objects
from .request_parts import bucket_backend, read_action

log = logging.getLogger("getbatch.server")
_enc = msgspec.json.Encoder()


SUMMARY = "shard-index-summary"


def _selection(msg):
    """The selection of an index action: its value, the whole bucket when it names none."""
    value = msg.get("value")
    return {"template": ""} if value is None else value


class BucketCollection:
    """GET /v1/buckets: the bucket list (JSON, `[]` when there is none); with auth on, the
    buckets the token may read."""

    def __init__(self, storage, config):
        self.storage = storage
        self.config = config

    def on_get(self, req, resp):
        read_action(req, self.config.max_body)
        wanted = req.get_param("provider")
        providers = self.storage.providers() if not wanted else [normalize_provider(wanted)]
        out = []
        for p in providers:
            backend = self.storage.backends.get(p)
            if backend is None:
                continue
            try:
                names = backend.list_buckets()
            except StoreError as exc:
                if wanted or not backend.remote:
                    raise
                # every provider (the SDK's list_buckets(provider="")): a remote store this
                # node cannot reach or may not list (no AWS credentials) hides none of the
                # others' buckets
                log.info("bucket list without %s:// buckets: %s", p, exc)
                continue
            out += [{"name": n, "provider": p, "namespace": {"uuid": "", "name": ""}}
                    for n in names if permits(req, p, n, READ)]
        resp.content_type = "application/json"
        resp.data = _enc.encode(out)


class Bucket:
    """/v1/buckets/<bucket>; `jobs`: the node's job Registry (multi-object actions)."""

    def __init__(self, storage, config, jobs):
        self.storage = storage
        self.config = config
        self.jobs = jobs

    def on_post(self, req, resp, bucket):
        backend, bucket = bucket_backend(self.storage, req, bucket)
        msg = read_action(req, self.config.max_body)
        action = msg.get("action")
        if action == "create-bck":
            backend.create_bucket(bucket)
        elif action == "destroy-bck":
            backend.destroy_bucket(bucket)
        elif action in (PREFETCH, INDEX):
            value = _selection(msg) if action == INDEX else msg.get("value")
            self._start_job(resp, backend, bucket, action, value)
        else:
            raise AISError(400, f'unsupported bucket action {action!r} on {backend.provider}://'
                                f'{bucket} (supported: create-bck, destroy-bck, {PREFETCH}, '
                                f'{INDEX})')

    def _start_job(self, resp, backend, bucket, action, value):
        resp.content_type = "text/plain"
        cfg = self.config
        # an index build reads, it does not change objects: not throttled by job_rate
        resp.text = start_checked(self.jobs, action, backend, bucket, value, cfg.max_entries,
                                  cfg.max_template, 0 if action == INDEX else cfg.job_rate,
                                  cfg.max_inflate)

    def on_delete(self, req, resp, bucket):
        backend, bucket = bucket_backend(self.storage, req, bucket)
        msg = read_action(req, self.config.max_body)
        action = msg.get("action", "destroy-bck")
        if action in (DELETE, EVICT):
            self._start_job(resp, backend, bucket, action, msg.get("value"))
            return
        if action != "destroy-bck":
            raise AISError(400, f'unsupported bucket action {action!r} on {backend.provider}://'
                                f'{bucket} (supported: destroy-bck, {DELETE}, {EVICT})')
        backend.destroy_bucket(bucket)

    def on_patch(self, req, resp, bucket):
        backend, bucket = bucket_backend(self.storage, req, bucket)
        msg = read_action(req, self.config.max_body)
        if msg.get("action") != "set-bprops":
            raise AISError(400, f'unsupported bucket action {msg.get("action")!r} on '
                                f'{backend.provider}://{bucket} (supported: set-bprops)')
        value = msg.get("value")
        if not isinstance(value, dict) or not value:
            raise AISError(400, 'malformed set-bprops request: "value" must be an object of '
                                'properties, e.g. {"mirror": {"enabled": true, "copies": 2}}')
        backend.set_bucket_props(bucket, value)

    def _index_summary(self, resp, backend, bucket, value):
        cfg = self.config
        selection = checked_selection(SUMMARY, backend, bucket, value, cfg.max_entries,
                                      cfg.max_template)
        found = shardindex.summary(backend, bucket, selection.items(backend, bucket))
        if found is None:
            raise AISError(400, f"{backend.provider}://{bucket}: this node keeps no shard "
                                "indexes for the bucket's provider to summarize")
        resp.content_type = "application/json"
        resp.data = _enc.encode(dict(found, bucket=bucket, provider=backend.provider))

    def on_head(self, req, resp, bucket):
        backend, bucket = bucket_backend(self.storage, req, bucket)
        resp.set_header("Ais-Bucket-Props", _enc.encode(backend.bucket_props(bucket)).decode())

    def on_get(self, req, resp, bucket):
        backend, bucket = bucket_backend(self.storage, req, bucket)
        msg = read_action(req, self.config.max_body)
        action = msg.get("action", "list")
        if action == SUMMARY:
            self._index_summary(resp, backend, bucket, _selection(msg))
            return
        if action != "list":
            raise AISError(400, f'unsupported bucket action {action!r} on {backend.provider}://'
                                f'{bucket} (supported: list, {SUMMARY})')
        ctype, body = list_objects(backend, bucket, msg.get("value") or {},
                                   req.get_header("Accept") or "", self.config.max_inflate)
        resp.content_type = ctype
        resp.data = body
        resp.status = falcon.HTTP_200
