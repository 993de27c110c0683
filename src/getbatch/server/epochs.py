"""/v1/ml/epochs: register, describe, list and delete epoch plans (getbatch/epochs/).

    POST   /v1/ml/epochs        a plan spec (epochs/spec.py) -> its record, with "id"
    GET    /v1/ml/epochs        {"plans": [record, ...]}, oldest first
    GET    /v1/ml/epochs/<id>   the record: spec, samples, members, shards, steps (per rank
                                per epoch), digest, plan_bytes
    DELETE /v1/ml/epochs/<id>

A GetBatch then names a plan's step (epochs/request.py). With auth on, creating a plan needs
READ on its bucket, deleting one ADMIN on it; a plan of a bucket the token may not read is
not listed, and asking for it is word for word asking for a missing one (404).
"""
import msgspec

from ..auth.tokens import ADMIN, READ
from ..epochs.plans import plan_not_found
from .auth import authorize, permits
from .request_parts import read_body
from .errors import AISError

_enc = msgspec.json.Encoder()


def _json(resp, doc):
    resp.content_type = "application/json"
    resp.data = _enc.encode(doc)


class PeerPlan:
    """/v1/_peer/epochs/<id>: GET this node's copy of a plan's dataset (404 without one), PUT
    one (kept when it matches the plan's digest; 409 otherwise): epochs/replicas.py."""

    def __init__(self, plans):
        self.plans = plans

    def on_get(self, req, resp, plan_id):
        ds = self.plans.local_dataset(self.plans.get(plan_id))
        if ds is None:
            raise AISError(404, f"no copy of epoch plan {plan_id}'s dataset on this node")
        resp.content_type = "application/octet-stream"
        resp.data = ds.to_bytes()

    def on_put(self, req, resp, plan_id):
        rec = self.plans.get(plan_id)
        if self.plans.adopt(rec, read_body(req, 1 << 31)) is None:
            raise AISError(409, f"not the dataset of epoch plan {plan_id} (digest differs)")


class EpochPlans:
    def __init__(self, plans, config):
        self.plans = plans
        self.config = config

    def on_post(self, req, resp):
        body = read_body(req, self.config.max_body)
        try:
            doc = msgspec.json.decode(body)
        except (msgspec.DecodeError, RecursionError) as exc:
            raise AISError(400, f"epoch plan: malformed JSON: {exc}") from None
        if isinstance(doc, dict) and isinstance(doc.get("bucket"), str):
            authorize(req, doc.get("provider") or "ais", doc["bucket"], READ)
        _json(resp, self.plans.create(doc))

    def on_get(self, req, resp):
        _json(resp, {"plans": [p for p in self.plans.list() if _readable(req, p)]})

    def on_get_one(self, req, resp, plan_id):
        _json(resp, self._get(req, plan_id))

    def on_delete_one(self, req, resp, plan_id):
        spec = self._get(req, plan_id)["spec"]
        authorize(req, spec["provider"], spec["bucket"], ADMIN)
        self.plans.delete(plan_id)

    def _get(self, req, plan_id):
        rec = self.plans.get(plan_id)
        if not _readable(req, rec):
            raise plan_not_found(plan_id)
        return rec


def _readable(req, rec):
    spec = rec["spec"]
    return permits(req, spec["provider"], spec["bucket"], READ)
