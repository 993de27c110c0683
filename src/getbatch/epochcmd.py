"""`getbatch epoch create|show|list`: epoch plans from the command line (docs/epochs.md).

`create` prints the new plan's id on stdout (for scripts: `ID=$(getbatch epoch create ...)`)
and a summary on stderr; `show ID` prints the plan's record as JSON; `list` a table. A batch
of a plan is fetched with `getbatch get --epoch ID --rank R --step N`. With
`AIS_AUTHN_TOKEN` set, the token is sent as AIS clients do.
"""
import json
import os
import sys

import requests

from .client import DEFAULT_URL, auth_headers

COLUMNS = ("ID", "BUCKET", "SHARDS", "SAMPLES", "WORLD", "BATCH", "STEPS", "SHUFFLE", "CREATED")
_TIMEOUT = (5, 600)   # building a plan lists every shard


class EpochError(Exception):
    """One line for the person who ran the command."""


def _call(method, url, **kw):
    try:
        r = requests.request(method, url, headers=auth_headers(), timeout=_TIMEOUT, **kw)
    except requests.RequestException as exc:
        raise EpochError(f"cannot reach {url}: {type(exc).__name__}") from None
    if r.status_code != 200:
        try:
            msg = r.json().get("message") or r.text
        except ValueError:
            msg = r.text
        raise EpochError(f"{r.status_code} {msg.strip()[:500]}")
    return r.json() if r.content else None


def spec_of(args):
    """The plan spec the `create` flags describe."""
    if sum(x is not None for x in (args.template, args.prefix, args.names)) != 1:
        raise EpochError("give the shards one way: --template, --prefix or --names")
    shards = ({"template": args.template} if args.template is not None else
              {"prefix": args.prefix} if args.prefix is not None else
              {"names": args.names})
    spec = {"bucket": args.bucket, "provider": args.provider, "shards": shards,
            "group": args.group, "seed": args.seed, "world_size": args.world_size,
            "batch_size": args.batch_size, "drop_last": args.drop_last,
            "shuffle": {"mode": args.shuffle}}
    if args.shuffle == "shard" and args.window:
        spec["shuffle"]["window"] = args.window
    if args.ext:
        spec["members"] = {"ext": args.ext.split(",")}
    elif args.regex:
        spec["members"] = {"regex": args.regex}
    return spec


def table(plans):
    rows = [COLUMNS] + [(p["id"], f"{p['spec']['provider']}://{p['spec']['bucket']}",
                         str(p["shards"]), str(p["samples"]), str(p["spec"]["world_size"]),
                         str(p["spec"]["batch_size"]), str(p["steps"]),
                         p["spec"]["shuffle"]["mode"], p["created"]) for p in plans]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def run(args):
    base = args.url.rstrip("/") + "/v1/ml/epochs"
    try:
        if args.epoch_cmd == "create":
            rec = _call("POST", base, json=spec_of(args))
            print(rec["id"])
            print(f"plan {rec['id']}: {rec['samples']} samples ({rec['members']} files) in "
                  f"{rec['shards']} shards, {rec['steps']} steps per rank per epoch",
                  file=sys.stderr)
        elif args.epoch_cmd == "show":
            print(json.dumps(_call("GET", f"{base}/{args.id}"), indent=2))
        else:
            plans = _call("GET", base)["plans"]
            print(json.dumps(plans, indent=2) if args.json else table(plans))
    except EpochError as exc:
        print(f"getbatch epoch: {exc}", file=sys.stderr)
        return 1
    return 0


def add_parser(sub):
    """`getbatch epoch ...` on the command's subparsers `sub`."""
    ep = sub.add_parser("epoch", help="register, show and list epoch plans",
                        description="Epoch plans: deterministic, resumable training input "
                                    "from existing shards (docs/epochs.md).")
    what = ep.add_subparsers(dest="epoch_cmd", required=True, metavar="COMMAND")
    url = dict(default=os.environ.get("AIS_ENDPOINT") or DEFAULT_URL,
               help=f"any node (default $AIS_ENDPOINT or {DEFAULT_URL})")
    c = what.add_parser("create", help="register a plan; prints its id")
    c.add_argument("--url", **url)
    c.add_argument("--bucket", required=True)
    c.add_argument("--provider", default="ais")
    c.add_argument("--template", help="shard names, e.g. 'shard-{000000..009999}.tar'")
    c.add_argument("--prefix", help="every shard under this prefix")
    c.add_argument("--names", nargs="+", metavar="SHARD", help="these shards, in this order")
    c.add_argument("--ext", help="only files ending so, comma-separated (.jpg,.cls)")
    c.add_argument("--regex", help="only files whose name matches")
    c.add_argument("--group", choices=("member", "sample"), default="member",
                   help="sample: files sharing a basename are one sample (x.jpg + x.cls)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--world-size", type=int, default=1)
    c.add_argument("--batch-size", type=int, required=True, help="samples per batch of a rank")
    c.add_argument("--drop-last", action="store_true")
    c.add_argument("--shuffle", choices=("full", "shard", "none"), default="full")
    c.add_argument("--window", type=int, help="with --shuffle shard: samples shuffled together")
    s = what.add_parser("show", help="a plan's record as JSON")
    s.add_argument("id")
    s.add_argument("--url", **url)
    ls = what.add_parser("list", help="every plan, as a table")
    ls.add_argument("--url", **url)
    ls.add_argument("--json", action="store_true", help="the API's JSON instead of a table")
