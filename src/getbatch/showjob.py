"""`getbatch show job`: the GetBatch jobs of a node, or of its whole cluster, as a table.

It asks `GET /v1/jobs?cluster=true` (server/jobs.py): on a cluster the node asks its peers,
on a single node it answers alone. The table is the reference's (`ais show job`): NODE ID
KIND BUCKET OBJECTS BYTES START END STATE and a Total row; BUCKET only when some job has a
default bucket. A running job's OBJECTS are `done/total` and its STATE carries how far it is
(bytes sent of the body's length when known, else entries). Only running jobs unless `--all`.
`--refresh S` redraws every S seconds (in place on a terminal) until Ctrl-C or `--count`
tables. A node that did not answer is one line on stderr; the others are still shown.
With `AIS_AUTHN_TOKEN` set, the token is sent as AIS clients do.
"""
import datetime
import json
import os
import sys
import time

import requests

from .client import DEFAULT_URL, add_token_option, auth_headers, human

COLUMNS = ("NODE", "ID", "KIND", "BUCKET", "OBJECTS", "BYTES", "START", "END", "STATE")
RUNNING = ("planning", "streaming", "running")   # "running": a shard-index build
_TIMEOUT = (5, 30)


class ShowError(Exception):
    """One line for the person who ran the command."""


def fetch(url, finished, token=None):
    """The answer of `url`'s /v1/jobs for the whole cluster: {"jobs": [...], "errors": {...}};
    `token`: see client.auth_headers."""
    endpoint = url.rstrip("/") + "/v1/jobs"
    try:
        r = requests.get(endpoint, params={"cluster": "true", "all": str(finished).lower()},
                         headers=auth_headers(token), timeout=_TIMEOUT)
    except requests.RequestException as exc:
        raise ShowError(f"cannot reach {endpoint}: {type(exc).__name__}") from None
    if r.status_code != 200:
        try:
            msg = r.json().get("message") or r.text
        except ValueError:
            msg = r.text
        raise ShowError(f"{endpoint}: {r.status_code} {msg.strip()[:300]}")
    try:
        doc = r.json()
        doc["jobs"], doc["errors"]
    except (ValueError, KeyError, TypeError):
        raise ShowError(f"{endpoint} answered something that is not a job list") from None
    return doc


def _time(ns):
    if not ns:
        return "-"
    return datetime.datetime.fromtimestamp(ns / 1e9).strftime("%H:%M:%S")


def _progress(r):
    """How far a running job is, in percent; "" while planning."""
    if r["state"] not in ("streaming", "running"):
        return ""
    if r.get("size"):
        return f" {100 * r['bytes'] // r['size']}%"
    if r.get("total"):
        return f" {100 * r['entries'] // r['total']}%"
    return ""


def rows(jobs):
    """The table's rows (lists of cells), Total row last; BUCKET left out when no job has one."""
    out = []
    for r in jobs:
        objects = (f"{r['entries']}/{r['total']}" if r["state"] in RUNNING and r["total"]
                   else str(r["entries"]))
        bucket = f"{r['provider']}://{r['bucket']}" if r["bucket"] else "-"
        out.append([r["node"], r["id"], r["kind"], bucket, objects, human(r["bytes"]),
                    _time(r["start_ns"]), _time(r["end_ns"]), r["state"] + _progress(r)])
    out.append(["Total:", "", "", "", str(sum(r["entries"] for r in jobs)),
                human(sum(r["bytes"] for r in jobs)), "", "", ""])
    cols = list(COLUMNS)
    if not any(r["bucket"] for r in jobs):
        i = cols.index("BUCKET")
        del cols[i]
        for row in out:
            del row[i]
    return cols, out


def table(jobs):
    """The text of the table (no trailing newline)."""
    cols, body = rows(jobs)
    widths = [max(len(c), *(len(row[i]) for row in body)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
             for row in [cols] + body]
    return "\n".join(lines)


def run(args):
    """`getbatch show job` with parsed `args`; returns the exit status."""
    if args.refresh is not None and args.refresh <= 0:
        print("getbatch show job: --refresh must be a positive number of seconds",
              file=sys.stderr)
        return 2
    tty = sys.stdout.isatty()
    shown = 0
    try:
        while True:
            doc = fetch(args.url, args.all, args.token)
            for node, err in sorted(doc["errors"].items()):
                print(f"getbatch show job: node {node} did not answer: {err}", file=sys.stderr)
            if args.json:
                text = json.dumps(doc, indent=None if args.refresh else 2)
            elif not doc["jobs"]:
                text = "No running GetBatch jobs" if not args.all else "No GetBatch jobs"
            else:
                text = table(doc["jobs"])
            if args.refresh and tty and not args.json:
                sys.stdout.write("\x1b[H\x1b[J")   # redraw in place
            print(text, flush=True)
            shown += 1
            if not args.refresh or (args.count and shown >= args.count):
                return 0
            time.sleep(args.refresh)
            if not tty and not args.json:
                print()
    except ShowError as exc:
        print(f"getbatch show job: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


def add_parser(sub):
    """`getbatch show job ...` on the command's subparsers `sub`."""
    show = sub.add_parser("show", help="show GetBatch jobs (running, or all kept)",
                          description="Show what a node or its cluster is doing.")
    what = show.add_subparsers(dest="show_what", required=True, metavar="WHAT")
    j = what.add_parser(
        "job", help="GetBatch jobs of the node's whole cluster (or of the single node)",
        description="GetBatch jobs as a table: NODE ID KIND BUCKET OBJECTS BYTES START END "
                    "STATE and a Total row; a running job shows done/total entries and how "
                    "far it is. Every node of the cluster the node is in is asked.")
    j.add_argument("--url", default=os.environ.get("AIS_ENDPOINT") or DEFAULT_URL,
                   help=f"any node (default $AIS_ENDPOINT or {DEFAULT_URL})")
    j.add_argument("--all", action="store_true",
                   help="also the finished jobs each node keeps (done, failed, aborted)")
    j.add_argument("--refresh", type=float, metavar="SECONDS",
                   help="show again every SECONDS until Ctrl-C")
    j.add_argument("--count", type=int, default=0, metavar="N",
                   help="with --refresh: stop after N tables")
    j.add_argument("--json", action="store_true", help="the API's JSON instead of a table")
    add_token_option(j)
