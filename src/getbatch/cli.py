"""Command line: `getbatch serve` runs one node under gunicorn; `getbatch config show` prints the
effective configuration; `getbatch cluster` starts a local etcd and N nodes; `getbatch
rebalance` moves a cluster's objects to their current owners; `getbatch get` runs one
GetBatch against a node (client.py).

Every setting of `getbatch.config` is a flag of both commands, an environment variable
(GETBATCH_<NAME>) and a key of the `--config` TOML file. A bad value is one line on stderr and
exit status 2 (usage); a node that cannot start (server/startup.py checks before gunicorn
starts) is one line and exit status 1 (environment), never a traceback per worker.
"""
import argparse
import os
import sys
import time

from . import __version__
from .auth import command as token_command
from . import configcmd
from .client import add_token_option, auth_headers
from .config import SETTINGS, Config, ConfigError, format_value

_FLAG_SETTINGS = [s for s in SETTINGS if s.name != "pure"]


class CLIError(Exception):
    """A problem with the machine or the environment (exit status 1)."""


def _backend():
    from .archive import backend
    return backend()


def _config_from(args):
    flags = {s.name: getattr(args, s.name) for s in _FLAG_SETTINGS}
    return Config.load(file=args.config, flags=flags)


def show_config(config):
    width = max(len(s.name) for s in SETTINGS)
    for s in SETTINGS:
        print(f"{s.name:<{width}}  {format_value(s.name, getattr(config, s.name)):<12}  "
              f"{config.origin(s.name)}")


def _add_setting_flags(p):
    p.add_argument("--config", metavar="FILE", default=None,
                   help="TOML file of settings (key = value lines); flags and GETBATCH_* "
                        "environment variables override it")
    for s in _FLAG_SETTINGS:
        default = s.default() if callable(s.default) else s.default
        kw = {"metavar": s.name.upper()} if s.parse.__name__ != "_as_bool" else {
            "nargs": "?", "const": "true", "metavar": "BOOL"}
        p.add_argument(s.flag, dest=s.name, default=None,
                       help=f"{s.help} (default {format_value(s.name, default)}; env {s.env})",
                       **kw)


def parser():
    p = argparse.ArgumentParser(
        prog="getbatch",
        description="Ordered multi-object batches over the AIStore GetBatch protocol.")
    p.add_argument("--version", action="version",
                   version=f"getbatch {__version__} (backend {_backend()})")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    s = sub.add_parser("serve", help="run one node (the AIStore API incl. /v1/ml/moss)",
                       description="Run one node under gunicorn. Settings come from defaults < "
                                   "--config FILE < GETBATCH_* environment < these flags.")
    _add_setting_flags(s)
    c = sub.add_parser("config", help="show the effective configuration",
                       description="Configuration of a node.")
    csub = c.add_subparsers(dest="config_cmd", required=True, metavar="ACTION")
    show = csub.add_parser("show", help="print every setting, its value and where it came from",
                           description="Print every setting with the value `serve` would use "
                                       "with the same file, environment and flags.")
    _add_setting_flags(show)
    # -- runtime settings of a running node (configcmd.py)
    show.add_argument("--url", default=None,
                      help="show a running node's settings instead, runtime overrides included")
    add_token_option(show)
    configcmd.add_parsers(csub)
    # -- auth: `getbatch token issue`
    token_command.add_parser(sub)
    # -- clusters
    cl = sub.add_parser("cluster", help="start a local etcd and N nodes (development)",
                        description="Start a local etcd and N nodes on consecutive ports from "
                                    "--port, each with its data dir under --data-dir; print "
                                    "their URLs. When a node (or etcd) exits, the others keep "
                                    "running: the message names it and how to start it again; "
                                    "SIGHUP to the cluster command restarts what exited. "
                                    "Ctrl-C stops everything.")
    cl.add_argument("--nodes", type=int, default=3, help="number of nodes (default 3)")
    cl.add_argument("--data-dir", default="cluster-data",
                    help="directory of the nodes' data dirs, etcd's data and the logs "
                         "(default cluster-data)")
    cl.add_argument("--port", type=int, default=51080, help="port of the first node (default 51080)")
    cl.add_argument("--workers", type=int, default=1, help="server processes per node (default 1)")
    cl.add_argument("--tls", action="store_true",
                    help="TLS everywhere: a throwaway CA under the data dir signs certificates "
                         "for etcd and the nodes; nodes serve HTTPS and speak mutual TLS to "
                         "each other and to etcd")
    cl.add_argument("--restart-exited", action="store_true",
                    help="start a node (or etcd) again as soon as it exits, instead of on SIGHUP")
    rb = sub.add_parser("rebalance", help="move objects to their current owners (a cluster)",
                        description="Start a rebalance on every node of the cluster and show "
                                    "its progress until it is done. Safe to interrupt and rerun.")
    rb.add_argument("--url", default="http://127.0.0.1:51080", help="any node of the cluster")
    rb.add_argument("--rate", type=int, default=500,
                    help="objects checked per second per node (default 500; 0: no limit)")
    rb.add_argument("--no-wait", action="store_true", help="start it and return")
    rb.add_argument("--stop", action="store_true",
                    help="stop a running rebalance on every node (a rerun goes on from there)")
    add_token_option(rb)
    _add_get_command(sub)
    # -- jobs: `getbatch show job`
    from . import epochcmd, showjob
    showjob.add_parser(sub)
    epochcmd.add_parser(sub)
    from . import loadgen, shardindexcmd
    loadgen.add_parser(sub)
    shardindexcmd.add_parser(sub)
    return p


def _cluster(args):
    from .cluster.devcluster import ClusterError, run
    if not 1 <= args.nodes <= 64:
        raise ConfigError(f"invalid --nodes {args.nodes}: expecting 1 to 64")
    try:
        run(args.nodes, args.data_dir, args.port, args.workers, args.restart_exited,
            use_tls=args.tls)
    except ClusterError as exc:
        raise CLIError(str(exc)) from None


def _rebalance(args):
    import requests
    url = args.url.rstrip("/") + "/v1/rebalance"
    headers = auth_headers(args.token)
    try:
        if args.stop:
            r = requests.delete(url, headers=headers, timeout=30)
            if r.status_code != 200:
                raise CLIError(f"{url}: {r.status_code} {r.text.strip()}")
            for node, st in sorted(r.json()["nodes"].items()):
                print(f"node {node}: {'stopped' if st.get('stopped') else 'not running'}")
            return 0
        r = requests.post(url, params={"rate": args.rate}, headers=headers, timeout=30)
        if r.status_code != 200:
            raise CLIError(f"{url}: {r.status_code} {r.text.strip()}")
        for node, st in sorted(r.json()["nodes"].items()):
            print(f"node {node}: {'started' if st.get('started') else st}")
        while not args.no_wait:
            time.sleep(1)
            st = requests.get(url, headers=headers, timeout=30).json()
            parts = [f"{n} {s.get('state')} checked {s.get('checked', 0)} moved "
                     f"{s.get('moved', 0)} copied {s.get('copied', 0)} errors {s.get('errors', 0)}"
                     for n, s in sorted(st["nodes"].items())]
            print(f"rebalance {st['state']}: " + "; ".join(parts), flush=True)
            if st["state"] != "running":
                return 0 if st["state"] == "done" else 1
    except requests.RequestException as exc:
        raise CLIError(f"cannot reach {url}: {type(exc).__name__}") from None
    return 0


def _add_get_command(sub):
    from .client import DEFAULT_URL, FORMATS
    g = sub.add_parser(
        "get", help="run one GetBatch and write the archive to a file",
        description="Run one GetBatch (streaming) and write the archive: to a temporary name, "
                    "renamed when complete; a failed or cut batch leaves no output file and "
                    "exits non-zero. NAME is BUCKET/OBJECT, or OBJECT with --bucket; "
                    "SHARD/MEMBER (e.g. shard.tar/x.wav) names a file inside a shard.")
    g.add_argument("names", nargs="*", metavar="NAME", help="objects or archived files, in order")
    g.add_argument("--from", dest="from_file", metavar="FILE",
                   help="read the names from FILE, one a line ('-': stdin; # comments)")
    g.add_argument("--url", default=os.environ.get("AIS_ENDPOINT") or DEFAULT_URL,
                   help=f"the node (default $AIS_ENDPOINT or {DEFAULT_URL})")
    g.add_argument("--bucket", help="the bucket of every NAME")
    g.add_argument("-o", "--output", metavar="OUT",
                   help="the archive to write (default batch.<format extension>)")
    g.add_argument("--format", choices=list(FORMATS),
                   help="default: the spec's, else OUT's extension, else tar")
    g.add_argument("--coer", "--cont-on-err", dest="coer", action="store_true",
                   help="missing items become empty __404__/ entries instead of failing the batch")
    g.add_argument("--epoch", metavar="ID", help="the batch of epoch plan ID at --rank, --step "
                   "(and --epoch-number) instead of NAMEs")
    g.add_argument("--epoch-number", type=int, default=0, metavar="E",
                   help="with --epoch: which epoch (default 0)")
    g.add_argument("--rank", type=int, default=0, help="with --epoch: the rank (default 0)")
    g.add_argument("--step", type=int, default=0, help="with --epoch: the step (default 0)")
    g.add_argument("--spec", metavar="FILE",
                   help="a MossReq spec in JSON or YAML (.yaml/.yml), as `ais ml get-batch "
                        "--spec`: its entries, then any NAMEs")
    g.add_argument("--template", metavar="T",
                   help="the names a range template expands to, e.g. 'a-{000..099}.wav' "
                        "(with --bucket)")
    g.add_argument("--omit-src-bck", action="store_true",
                   help="name archive entries without their bucket (onob)")
    g.add_argument("--streaming", action="store_true",
                   help="accepted for `ais ml get-batch` scripts: getbatch get always streams")
    add_token_option(g)
    _add_lhotse_command(sub)


def _add_lhotse_command(sub):
    from .client import DEFAULT_URL
    g = sub.add_parser(
        "lhotse-get-batch", help="the cuts of a Lhotse manifest as archives, a batch each",
        description="As `ais ml lhotse-get-batch`: read a Lhotse cut manifest (cuts.jsonl, "
                    ".jsonl.gz or .jsonl.lz4), one entry per cut (its recording's source URI: "
                    "s3://B/O, ais://B/SHARD.tar/FILE, B/O), and write them to OUT, or "
                    "--batch-size cuts at a time to the archives --output-template names. "
                    "An archive's format follows its extension.")
    g.add_argument("output", nargs="?", metavar="OUT", help="one archive for every cut")
    g.add_argument("--cuts", required=True, metavar="FILE", help="the cut manifest")
    g.add_argument("--batch-size", type=int, metavar="N", help="cuts per archive")
    g.add_argument("--output-template", metavar="T",
                   help="names of the archives, e.g. 'batch-{001..999}.tar'")
    g.add_argument("--sample-rate", type=int, metavar="HZ",
                   help="read each cut's [start, start + duration) as bytes start*HZ on "
                        "(one byte per sample; give bytes per second for wider ones)")
    g.add_argument("--url", default=os.environ.get("AIS_ENDPOINT") or DEFAULT_URL,
                   help=f"the node (default $AIS_ENDPOINT or {DEFAULT_URL})")
    g.add_argument("--bucket", help="default bucket of the request")
    g.add_argument("--coer", "--cont-on-err", dest="coer", action="store_true",
                   help="missing items become empty __404__/ entries instead of failing")
    g.add_argument("--omit-src-bck", action="store_true",
                   help="name archive entries without their bucket (onob)")
    g.add_argument("--streaming", action="store_true",
                   help="accepted for `ais ml` scripts: getbatch always streams")
    add_token_option(g)


def main(argv=None):
    args = parser().parse_args(argv)
    if args.cmd == "get":
        from .client import run
        return run(args)
    if args.cmd == "lhotse-get-batch":
        from .client import run_lhotse
        return run_lhotse(args)
    if args.cmd == "config" and (args.config_cmd != "show" or args.url):
        try:
            return configcmd.run(args)
        except configcmd.ConfigCommandError as exc:
            print(f"getbatch: {exc}", file=sys.stderr)
            return 1
    if args.cmd == "show":
        from .showjob import run
        return run(args)
    if args.cmd == "epoch":
        from .epochcmd import run
        return run(args)
    if args.cmd == "bench":
        from .loadgen import run
        return run(args)
    if args.cmd == "shard-index":
        from .shardindexcmd import run
        return run(args)
    try:
        if args.cmd == "cluster":
            return _cluster(args) or 0
        if args.cmd == "rebalance":
            return _rebalance(args)
        config = _config_from(args)
        if args.cmd == "config":
            show_config(config)
        elif args.cmd == "serve":
            from .server.startup import StartupError, serve
            try:
                serve(config)
            except StartupError as exc:
                raise CLIError(str(exc)) from None
        elif args.cmd == "token":
            token_command.run(args, config)
    except ConfigError as exc:
        print(f"getbatch: {exc}", file=sys.stderr)
        return 2
    except CLIError as exc:
        print(f"getbatch: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
