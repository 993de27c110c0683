"""Command line: `getbatch serve` starts one node under gunicorn with the zero-copy worker.

Every option has an environment variable (GETBATCH_HOST, GETBATCH_PORT, GETBATCH_WORKERS,
GETBATCH_THREADS, GETBATCH_DATA_DIR), so a service manager can configure it either way.
"""
import argparse
import os
import sys

from .config import default_threads, default_workers

SNIPPET = """\
from aistore import Client
c = Client("{url}"); b = c.bucket("data"); b.create(exist_ok=True)
b.object("a.bin").get_writer().put_content(b"...")
for info, data in c.batch(["a.bin"], bucket=b).get(): print(info.obj_name, len(data))
"""


def _env(name, default):
    return os.environ.get(f"GETBATCH_{name}", default)


def gunicorn_options(host, port, workers, threads, data_dir):
    """The gunicorn settings a node runs with; shared with the tests and benchmarks."""
    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "getbatch.server.worker.GetBatchWorker",
        # well above the client's reuse window: a closed keep-alive connection costs the
        # SDK a 1-2 s retry (ais-wire-protocol §6)
        "keepalive": 75,
        # batches run in threads; the gthread main loop keeps heart-beating meanwhile
        "timeout": 120,
        "graceful_timeout": 10,
        "backlog": 2048,
        "control_socket_disable": True,
        "raw_env": [f"GETBATCH_DATA_DIR={data_dir}"],
    }


def serve(args):
    from gunicorn.app.base import BaseApplication

    data_dir = os.path.abspath(args.data_dir)
    os.makedirs(data_dir, exist_ok=True)
    os.environ["GETBATCH_DATA_DIR"] = data_dir
    opts = gunicorn_options(args.host, args.port, args.workers, args.threads, data_dir)

    class Node(BaseApplication):
        def load_config(self):
            for k, v in opts.items():
                self.cfg.set(k, v)

        def load(self):
            from .server.wsgi import app
            return app

    url = f"http://{args.host}:{args.port}"
    print(f"getbatch: serving {url} (data in {data_dir}, {args.workers} workers x "
          f"{args.threads} threads); Ctrl-C stops it.\nTry it with the AIStore SDK:\n\n"
          + SNIPPET.format(url=url), flush=True)
    Node().run()


def main(argv=None):
    p = argparse.ArgumentParser(prog="getbatch", description="ordered multi-object batch server")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="start one node (AIStore-compatible API incl. /v1/ml/moss)")
    s.add_argument("--host", default=_env("HOST", "127.0.0.1"))
    s.add_argument("--port", type=int, default=int(_env("PORT", "51080")))
    s.add_argument("--workers", type=int, default=int(_env("WORKERS", default_workers())))
    s.add_argument("--threads", type=int, default=int(_env("THREADS", default_threads())))
    s.add_argument("--data-dir", default=_env("DATA_DIR", "data"))
    args = p.parse_args(argv)
    if args.cmd == "serve":
        serve(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
