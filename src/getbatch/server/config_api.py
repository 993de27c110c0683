"""The runtime configuration over HTTP (runtime.py has the rules).

    GET /v1/config                              every setting: value, origin, runtime or not
    PUT /v1/config   {"action": "set-config", "value": {"max_batches": 8, ...}}
                     {"action": "reset-config", "value": ["max_batches"]}   (null: every one)
    PUT /v1/cluster/set-config?max_batches=8&get_batch.max_soft_errs=10     (as `ais config
    PUT /v1/cluster/reset-config[?name]                                      cluster` sends)

A bad key or value is a 400 naming it; a setting that needs a restart says so. With `auth`
on, changing needs admin permission on every bucket (a token with `*:a`).
"""
import msgspec

from ..runtime import RuntimeConfigError
from .auth import grant_of, require_cluster_admin
from .request_parts import read_action
from .errors import AISError

_enc = msgspec.json.Encoder()


def _who(req):
    grant = grant_of(req)
    return f"{grant.sub}@{req.remote_addr}" if grant is not None else req.remote_addr


def _require_admin(req):
    require_cluster_admin(req, "change the configuration")


def _answer(resp, live, body):
    resp.content_type = "application/json"
    resp.data = _enc.encode(dict(body, settings=live.describe()))


class ConfigAPI:
    """/v1/config: read, set and reset runtime settings."""

    def __init__(self, live, max_body):
        self.live = live
        self.max_body = max_body

    def on_get(self, req, resp):
        _answer(resp, self.live, {})

    def on_put(self, req, resp):
        _require_admin(req)
        msg = read_action(req, self.max_body)
        action, value = msg.get("action"), msg.get("value")
        try:
            if action == "set-config":
                if not isinstance(value, dict):
                    raise RuntimeConfigError('set-config needs a JSON object of settings as '
                                             '"value", e.g. {"max_batches": 8}')
                done = {"set": list(self.live.set(value, _who(req)))}
            elif action == "reset-config":
                if value is not None and not (isinstance(value, list)
                                              and all(isinstance(v, str) for v in value)):
                    raise RuntimeConfigError('reset-config takes a list of setting names as '
                                             '"value" (or none: every one)')
                done = {"reset": self.live.reset(value or (), _who(req))}
            else:
                raise RuntimeConfigError(f"unsupported config action {action!r} (supported: "
                                         "set-config, reset-config)")
        except RuntimeConfigError as exc:
            raise AISError(400, str(exc)) from None
        _answer(resp, self.live, done)


class ClusterConfigAction:
    """PUT /v1/cluster/{action}: AIS's set-config (settings as query parameters) and
    reset-config (names, or none for every one)."""

    def __init__(self, live):
        self.live = live

    def on_put(self, req, resp, action):
        _require_admin(req)
        params = dict(req.params)
        try:
            if params.pop("transient", None) is not None:
                raise RuntimeConfigError("transient changes are not supported: every runtime "
                                         "change persists until reset-config")
            if action == "set-config":
                done = {"set": list(self.live.set(params, _who(req)))}
            elif action == "reset-config":
                done = {"reset": self.live.reset(list(params), _who(req))}
            else:
                raise AISError(400, f"unsupported cluster action {action!r} (supported: "
                                    "set-config, reset-config)")
        except RuntimeConfigError as exc:
            raise AISError(400, str(exc)) from None
        _answer(resp, self.live, done)
