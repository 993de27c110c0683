"""Launch a gunicorn node with the project's settings
(getbatch.server.startup.gunicorn_options) but a chosen app and worker class;
bench_server.py starts the stock-gthread and naive nodes with it.

    python bench/nodes.py --app getbatch.server.wsgi:app --worker-class gthread \
        --port 8080 --data-dir DIR [--workers 2 --threads 4]
"""
import argparse
import os

from gunicorn.app.base import BaseApplication
from gunicorn.util import import_app

from getbatch.server.startup import gunicorn_options
from getbatch.config import Config


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--app", required=True, help="module:attribute of the WSGI app")
    p.add_argument("--worker-class", default="gthread")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=4)
    args = p.parse_args(argv)
    data_dir = os.path.abspath(args.data_dir)
    # the apps read it at import, in the master (preload off: in each worker)
    os.environ["GETBATCH_DATA_DIR"] = data_dir
    config = Config.load(flags={"port": args.port, "workers": args.workers,
                                "threads": args.threads, "data_dir": data_dir})
    opts = gunicorn_options(config)
    opts["worker_class"] = args.worker_class

    class Node(BaseApplication):
        def load_config(self):
            for k, v in opts.items():
                self.cfg.set(k, v)

        def load(self):
            return import_app(args.app)

    Node().run()


if __name__ == "__main__":
    main()
