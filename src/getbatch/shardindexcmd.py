"""`getbatch shard-index build | summary | abort`: shard indexes ahead of the first epoch.

`build` starts an `index-shards` job over a bucket, a prefix or a template (server:
jobs/shardindex.py) on every node of the cluster (an index serves the node holding its shard,
so each indexes the shards it holds; one node: one job) and prints its id (on a cluster, each
node's); with `--wait` it follows the jobs (a live line on a terminal: shards indexed, bytes)
until they end. `summary` prints how many of the bucket's shards have an index of their
current version (`--json`: shards, indexed, stale, members, bytes, indexed_bytes, errors; on
a cluster summed over the nodes, each shard counted on every node that holds it, and per
node under `nodes`). `abort ID` stops a build. A job is also listed by `getbatch show job`
and followed by the SDK's `client.job(ID)`.
"""
import json
import os
import sys
import time

import requests

from .client import DEFAULT_URL, add_token_option, auth_headers, human

KIND = "index-shards"
_TIMEOUT = (5, 60)
_POLL = 0.5


class IndexCmdError(Exception):
    """One line for the person who ran the command."""


def _call(method, url, token, **kw):
    try:
        r = requests.request(method, url, headers=auth_headers(token), timeout=_TIMEOUT, **kw)
    except requests.RequestException as exc:
        raise IndexCmdError(f"cannot reach {url}: {type(exc).__name__}") from None
    if r.status_code != 200:
        try:
            msg = r.json().get("message") or r.text
        except ValueError:
            msg = r.text
        raise IndexCmdError(f"{url}: {r.status_code} {msg.strip()[:300]}")
    return r


def _selection(args):
    return {"template": args.template if args.template is not None else (args.prefix or "")}


def nodes(args):
    """[(node id, URL)] of every node of the cluster `args.url` is in (itself on one node):
    an index serves the node that holds its shard, so each builds and reports its own."""
    r = _call("GET", args.url.rstrip("/") + "/v1/daemon", args.token, params={"what": "smap"})
    try:
        tmap = r.json()["tmap"]
        return sorted((i, n["public_net"]["direct_url"]) for i, n in tmap.items())
    except (ValueError, KeyError, TypeError, AttributeError):
        raise IndexCmdError(f"{args.url} answered a cluster map without its nodes") from None


def _job(url, job_id, token):
    """(status, loc-objs, loc-bytes) of job `job_id` on the node at `url`; the status first:
    once it says ended, the counts read after it are the last ones."""
    q = url.rstrip("/") + "/v1/cluster"
    args = {"ID": job_id, "Kind": KIND}
    status = _call("GET", q, token, params={"what": "status"}, json=args).json()
    snaps = _call("GET", q, token, params={"what": "qryxstats"}, json=args).json()
    stats = next(s for node in snaps.values() for s in node)["stats"]
    return status, stats["loc-objs"], stats["loc-bytes"]


def build(args, out=sys.stderr):
    started = []
    for node_id, url in nodes(args):
        r = _call("POST", f"{url.rstrip('/')}/v1/buckets/{args.bucket}", args.token,
                  params={"provider": args.provider},
                  json={"action": KIND, "value": _selection(args)})
        started.append((node_id, url, r.text.strip()))
    for node_id, _, job_id in started:
        print(job_id if len(started) == 1 else f"{node_id} {job_id}")
    if not args.wait:
        return 0
    live = out.isatty()
    while True:
        states = [_job(url, job_id, args.token) for _, url, job_id in started]
        n, nbytes = sum(s[1] for s in states), sum(s[2] for s in states)
        if all(s[0]["end_time"] for s in states):
            break
        if live:
            out.write(f"\r{KIND}: {n} shards indexed, {human(nbytes)} \x1b[K")
            out.flush()
        time.sleep(_POLL)
    if live:
        out.write("\r\x1b[K")
    bad = 0
    for (node_id, _, job_id), (status, k, kbytes) in zip(started, states):
        state = "aborted" if status["aborted"] else "failed" if status["err"] else "done"
        bad += state != "done"
        print(f"{KIND} {job_id} {state}: {k} shards indexed, {human(kbytes)}"
              + (f" on {node_id}" if len(started) > 1 else "")
              + (f"; {status['err']}" if status["err"] else ""), file=out)
    return 1 if bad else 0


_SUMMED = ("shards", "indexed", "stale", "members", "bytes", "indexed_bytes", "errors")


def summary(args):
    per_node = {}
    for node_id, url in nodes(args):
        r = _call("GET", f"{url.rstrip('/')}/v1/buckets/{args.bucket}", args.token,
                  params={"provider": args.provider},
                  json={"action": "shard-index-summary", "value": _selection(args)})
        per_node[node_id] = r.json()
    doc = {k: sum(d[k] for d in per_node.values()) for k in _SUMMED}
    doc.update(bucket=args.bucket, provider=args.provider,
               first_errors=[e for d in per_node.values() for e in d["first_errors"]][:3])
    if len(per_node) > 1:
        doc["nodes"] = per_node   # a shard kept on two nodes counts on each
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    for node_id, d in sorted(per_node.items()) if len(per_node) > 1 else ():
        print(f"{node_id}: " + _line(d))
    print(f"{args.provider}://{args.bucket}: " + _line(doc))
    if doc["errors"]:
        print(f"{doc['errors']} not readable as shards: " + "; ".join(doc["first_errors"]),
              file=sys.stderr)
    return 0


def _line(d):
    return (f"{d['shards']} shards, {d['indexed']} indexed ({d['members']} members, "
            f"{human(d['indexed_bytes'])} of {human(d['bytes'])}), {d['stale']} stale, "
            f"{d['shards'] - d['indexed'] - d['stale']} not indexed")


def abort(args):
    for node_id, url in nodes(args):
        try:
            _call("PUT", url.rstrip("/") + "/v1/cluster", args.token,
                  json={"action": "stop", "value": {"ID": args.job_id, "Kind": KIND}})
        except IndexCmdError:
            continue   # the job of another node
        print(f"{KIND} {args.job_id}: abort requested on {node_id}")
        return 0
    raise IndexCmdError(f"no node runs job {args.job_id}")


def run(args):
    try:
        return {"build": build, "summary": summary, "abort": abort}[args.index_cmd](args)
    except IndexCmdError as exc:
        print(f"getbatch shard-index {args.index_cmd}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def add_parser(sub):
    s = sub.add_parser("shard-index", help="build shard indexes ahead, or see how far they are",
                       description=__doc__.split("\n\n")[1].replace("\n", " "))
    cmds = s.add_subparsers(dest="index_cmd", required=True, metavar="COMMAND")
    url = os.environ.get("AIS_ENDPOINT") or DEFAULT_URL
    for name, text in (("build", "start a job indexing the bucket's shards (prints its id)"),
                       ("summary", "how many of the bucket's shards are indexed")):
        c = cmds.add_parser(name, help=text, description=text)
        c.add_argument("--url", default=url, help=f"the node (default $AIS_ENDPOINT or {url})")
        c.add_argument("--bucket", required=True)
        c.add_argument("--provider", default="ais", help="the bucket's provider (default ais)")
        which = c.add_mutually_exclusive_group()
        which.add_argument("--prefix", help="only shards whose names start with PREFIX")
        which.add_argument("--template", help="only the shards a template names, e.g. "
                                              "shard-{0000..9999}.tar")
        add_token_option(c)
        if name == "build":
            c.add_argument("--wait", action="store_true", help="follow the job until it ends")
        else:
            c.add_argument("--json", action="store_true", help="the figures as JSON")
    a = cmds.add_parser("abort", help="stop a build", description="stop a build")
    a.add_argument("job_id", metavar="ID")
    a.add_argument("--url", default=url, help=f"the node (default $AIS_ENDPOINT or {url})")
    add_token_option(a)
