"""Start-up of a node, in one place: `serve` checks what can be checked before any worker
starts (a bad value, an unusable data directory, a port in use is one line and an exit
status, never a traceback per worker), opens the storage, joins the cluster, and runs
gunicorn with `NodeApplication`; each worker builds the app (app.create_app) from what the
master prepared. `wsgi_app` is the same for servers other than `getbatch serve`
(server/wsgi.py), single node only.

The order matters: the fd limit is raised before the storage sizes its fd budget from it, and
the metrics directory is emptied before the workers fork.
"""
import errno
import logging
import math
import os
import resource
import socket
import time

from gunicorn.app.base import BaseApplication

from .. import __version__, tls
from ..archive import backend
from ..auth.keys import signing_key
from ..config import SETTINGS
from .gunicorn_compat import GunicornVersionError

SNIPPET = """\
from aistore import Client
c = Client("{url}"); b = c.bucket("data"); b.create(exist_ok=True)
b.object("a.bin").get_writer().put_content(b"...")
for info, data in c.batch(["a.bin"], bucket=b).get(): print(info.obj_name, len(data))
"""


class StartupError(Exception):
    """The machine or the environment does not let the node start (exit status 1)."""


def gunicorn_options(config, on_ready=None):
    """The gunicorn settings a node runs with; shared with the tests and benchmarks."""
    opts = {
        "bind": f"{config.host}:{config.port}",
        "workers": config.workers,
        "threads": config.threads,
        "worker_class": "getbatch.server.worker.GetBatchWorker",
        # default 75 s, well above the client's reuse window: a closed keep-alive
        # connection costs the SDK a 1-2 s retry (ais-wire-protocol §6)
        "keepalive": math.ceil(config.keepalive),
        "worker_connections": config.max_connections,
        # batches run in threads; the gthread main loop keeps heart-beating meanwhile
        "timeout": 120,
        "graceful_timeout": 10,
        "backlog": 2048,
        "control_socket_disable": True,
        "loglevel": config.log_level.lower(),
        "accesslog": "-" if config.access_log else None,
        "access_log_format": '%(h)s %(t)s "%(r)s" %(s)s %(B)s %(M)sms',
    }
    if on_ready is not None:
        opts["when_ready"] = on_ready
    return opts


class LineFormatter(logging.Formatter):
    """The standard format, with the date and time part formatted once per second: there is a
    line per GetBatch, and strftime was most of what a line cost (bench/RESULTS.md, S1)."""

    _second = None
    _text = ""

    def formatTime(self, record, datefmt=None):
        second = int(record.created)
        if second != self._second:
            self._text = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
            self._second = second
        return f"{self._text},{int(record.msecs):03d}"


def _configure_logging(level):
    _skip_caller_lookup()
    logging.logThreads = False   # nor its thread, which no format here shows either
    handler = logging.StreamHandler()
    handler.setFormatter(LineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


def _skip_caller_lookup():
    """A line per GetBatch: spare each log record the lookup of its caller (sys._getframe),
    which no format here shows."""
    # `logging._srcfile = None` is the switch the Python logging HOWTO documents for this
    # (section "Optimization"); the module has no public one.
    logging._srcfile = None


def _raise_fd_limit():
    """Batches keep object files open between planning and sending (the store sizes its fd
    budget from this limit), so take the hard limit the system allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _open_storage(config):
    from ..store import StoreError, open_storage
    data_dir = os.path.abspath(config.data_dir)
    if os.path.exists(data_dir) and not os.path.isdir(data_dir):
        raise StartupError(f"data dir {data_dir} is not a directory")
    try:
        return open_storage(config)
    except (OSError, StoreError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        where = getattr(exc, "filename", None) or data_dir
        raise StartupError(f"data dir {data_dir} is not usable: {reason} ({where})") from None


def _check_port(host, port):
    """Fail before gunicorn does (which would retry five times, logging each)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as exc:
            hint = " (is another server running there?)" if exc.errno == errno.EADDRINUSE else ""
            raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}{hint}") from None


def _sources(config):
    """Where the effective values came from, e.g. 'defaults, file node.toml, environment'."""
    labels = []
    for s in SETTINGS:
        kind, _, rest = config.origin(s.name).partition(" ")
        label = {"default": "defaults", "env": "environment", "flag": "flags"}.get(
            kind, f"{kind} {rest}")
        if label not in labels:
            labels.append(label)
    return ", ".join(labels)


def banner(config, cluster=None):
    """What `getbatch serve` prints once the node listens: where, how, and an SDK snippet."""
    url = f"{'https' if config.tls_cert else 'http'}://{config.host}:{config.port}"
    where = url
    if cluster is not None:
        url = cluster.node.url
        where = f"{url} as node {cluster.node.id} of cluster {cluster.uuid} (etcd {','.join(config.etcd)})"
    return (f"getbatch {__version__} serving {where} (backend={backend()}, data dir "
            f"{os.path.abspath(config.data_dir)}, {config.workers} workers x {config.threads} "
            f"threads, config from {_sources(config)}); Ctrl-C stops it.\n"
            + ("Auth is on: every request but /v1/health needs a token "
               "(getbatch token issue; Client(url, token=...)).\n" if config.auth else "")
            + "Try it with the AIStore SDK (pip install aistore==2.0.0):\n\n"
            + SNIPPET.format(url=url))


def _join_cluster(config):
    """The node's Cluster when `etcd` is set (None otherwise); etcd must answer at start-up."""
    if not config.etcd:
        return None
    from ..cluster.etcd import EtcdUnavailable
    from ..cluster.node import Cluster
    try:
        return Cluster.boot(config)
    except ValueError as exc:
        raise StartupError(str(exc)) from None
    except EtcdUnavailable as exc:
        raise StartupError(f"cannot join the cluster: {exc}") from None


class NodeApplication(BaseApplication):
    """The gunicorn application of a node: gunicorn's settings from `options`, and in each
    worker the app over the storage (and cluster) the master opened. The worker reads the
    node's Config from `config`."""

    def __init__(self, config, storage, cluster, options):
        self.config = config
        self.storage = storage
        self.cluster = cluster
        self.options = options
        super().__init__()

    def load_config(self):
        for k, v in self.options.items():
            self.cfg.set(k, v)

    def load(self):
        from .app import create_app
        return create_app(self.config, self.storage, self.cluster)


def serve(config):
    """Run one node until it is stopped; StartupError when it cannot start."""
    try:
        from . import worker  # noqa: F401  (checks the gunicorn version before forking)
    except GunicornVersionError as exc:
        raise StartupError(str(exc)) from None
    _raise_fd_limit()
    _configure_logging(config.log_level)
    if config.auth:  # a missing or unusable key is one line, before any worker starts
        signing_key(config)
    tls.check(config)
    _check_port(config.host, config.port)
    storage = _open_storage(config)
    cluster = _join_cluster(config)
    # a node catches up with its peers each time it joins (cluster/catchup.py)
    registrar = (cluster.registrar(catch_up=cluster.catch_up_self)
                 if cluster is not None else None)

    def on_ready(server):
        if registrar is not None:
            # the arbiter holds the lease: when it is killed or stopped, the node drops out
            registrar.start()
        print(banner(config, cluster), flush=True)

    opts = gunicorn_options(config, on_ready=on_ready)
    if registrar is not None:
        opts["on_exit"] = lambda server: registrar.stop()
    # metrics: one multiprocess directory per node, emptied before the workers fork
    from .metrics import mark_worker_dead, multiprocess_dir, prepare_multiprocess
    metrics_dir = multiprocess_dir(config)
    prepare_multiprocess(metrics_dir)
    opts["child_exit"] = lambda server, worker: mark_worker_dead(metrics_dir, worker.pid)
    NodeApplication(config, storage, cluster, opts).run()


def wsgi_app(config):
    """The app of a single node, for a WSGI server other than `getbatch serve` (server/wsgi.py)."""
    if config.etcd:
        # a cluster node's lease is held by the `getbatch serve` master process (cluster.node)
        raise SystemExit("getbatch.server.wsgi serves a single node; start cluster nodes with "
                         "`getbatch serve --etcd URL --advertise URL`")
    from ..store import open_storage
    from .app import create_app
    return create_app(config, open_storage(config))
