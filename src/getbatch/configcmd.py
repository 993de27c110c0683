"""`getbatch config set|reset|show --url`: a running node's runtime settings (runtime.py).

    getbatch config set max_batches=8 warmup_workers=2 [--url URL]
    getbatch config reset [max_batches ...] [--url URL]       (no name: every override)
    getbatch config show --url URL                            (with origins; `*` = runtime)

On a cluster any node will do: the change reaches every node. A token for a node with auth
on comes from --token or $AIS_AUTHN_TOKEN.
"""
import os

from .client import DEFAULT_URL, add_token_option, auth_headers


class ConfigCommandError(Exception):
    """One line for the operator; exit status 1."""


def add_parsers(csub):
    url_help = f"the node (default $AIS_ENDPOINT or {DEFAULT_URL})"
    default_url = os.environ.get("AIS_ENDPOINT") or DEFAULT_URL
    s = csub.add_parser("set", help="change runtime settings of a running node or cluster",
                        description="Change settings on a running node (every worker; on a "
                                    "cluster every node) without a restart. Only runtime "
                                    "settings may change; the change persists until reset.")
    s.add_argument("pairs", nargs="+", metavar="KEY=VALUE")
    r = csub.add_parser("reset", help="drop runtime overrides",
                        description="Drop runtime overrides: the named ones, or every one.")
    r.add_argument("names", nargs="*", metavar="KEY")
    for p in (s, r):
        p.add_argument("--url", default=default_url, help=url_help)
        add_token_option(p)


def _call(args, method, path, **kw):
    import requests
    url = args.url.rstrip("/") + path
    headers = auth_headers(getattr(args, "token", None))
    try:
        r = requests.request(method, url, headers=headers, timeout=30, **kw)
    except requests.RequestException as exc:
        raise ConfigCommandError(f"cannot reach {url}: {type(exc).__name__}") from None
    try:
        doc = r.json()
    except ValueError:
        doc = None
    if r.status_code != 200 or not isinstance(doc, dict):
        msg = doc.get("message") if isinstance(doc, dict) else None
        raise ConfigCommandError(f"{url}: {r.status_code} {msg or r.text.strip()[:300]}")
    return doc


def _pairs(pairs):
    out = {}
    for p in pairs:
        key, sep, value = p.partition("=")
        if not sep or not key.strip():
            raise ConfigCommandError(f"invalid {p!r}: expecting KEY=VALUE, e.g. max_batches=8")
        out[key.strip()] = value.strip()
    return out


def print_settings(settings, only_runtime=False):
    width = max(len(k) for k in settings)
    for name, s in settings.items():
        if only_runtime and not s["runtime"]:
            continue
        mark = "*" if s["runtime"] else " "
        print(f"{name:<{width}} {mark} {s['value']:<12}  {s['origin']}")


def run(args):
    """The `config` actions that talk to a node; 0 on success."""
    if args.config_cmd == "set":
        doc = _call(args, "PUT", "/v1/config",
                    json={"action": "set-config", "value": _pairs(args.pairs)})
        for name in doc["set"]:
            s = doc["settings"][name]
            print(f"{name} = {s['value']}  ({s['origin']})")
    elif args.config_cmd == "reset":
        doc = _call(args, "PUT", "/v1/config",
                    json={"action": "reset-config", "value": args.names or None})
        for name in doc["reset"]:
            s = doc["settings"][name]
            print(f"{name} = {s['value']}  ({s['origin']})")
    else:
        print_settings(_call(args, "GET", "/v1/config")["settings"])
    return 0
