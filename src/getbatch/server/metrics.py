"""Prometheus metrics of a node: `GET /metrics`, the reference's GetBatch counters under the
names AIStore's code exports (so its dashboards and PromQL work unchanged), and histograms
of batches and object requests.

Under `getbatch serve` every worker process writes its samples to memory-mapped files in one
directory per node (prometheus-client's multiprocess mode, set up by `prepare_multiprocess`
in the master before the workers fork); `/metrics`, answered by any worker, merges them. The
files of a worker that died stay in the sum, so counters survive it; the gunicorn
`child_exit` hook drops only its live gauges. Any other WSGI server gets the same when it
exports PROMETHEUS_MULTIPROC_DIR, and one process's own figures otherwise.

Cost: nothing per item. A batch is counted once, when its body closes (one pass over its
items splits whole objects from archived files), an object request once, when answered. One
Falcon middleware does all of it, so the request path has no other hook.

The AIS counters are exported as AIStore's Go client writes them (`ais_target_getbatch_count`,
TYPE counter, no `_total`), which prometheus-client's text writer cannot do for a counter:
they are rendered here; everything else goes through prometheus-client's writer.
"""
import glob
import os
import shutil
import struct
import time

from ..batch.assemble import BatchOutput
from ..store.backend import Source

# (name, help) of the reference's counters (ais-moss-semantics §4.1), in its order
AIS_COUNTERS = (
    ("ais_target_getbatch_count", "GetBatch requests completed on this node, success or failure"),
    ("ais_target_getbatch_obj_count", "whole objects of size > 0 delivered by GetBatch"),
    ("ais_target_getbatch_file_count", "archived files of size > 0 delivered by GetBatch"),
    ("ais_target_getbatch_obj_bytes", "bytes of whole objects (or their ranges) delivered by GetBatch"),
    ("ais_target_getbatch_file_bytes", "bytes of archived files delivered by GetBatch"),
    ("ais_target_getbatch_gfn_count", "get-from-neighbour attempts"),
    ("ais_target_getbatch_rxwait_ns", "nanoseconds spent waiting for data from peers"),
    ("ais_target_getbatch_throttle_ns", "nanoseconds GetBatch requests waited for admission"),
    ("ais_target_err_getbatch_count", "failed GetBatch requests, 429 rejections included"),
    ("ais_target_err_soft_getbatch_count", "soft errors: missing items sent as placeholders (coer)"),
    ("ais_target_err_gfn_getbatch_count", "failed get-from-neighbour attempts"),
)
_AIS_NAMES = frozenset(name for name, _ in AIS_COUNTERS)

# seconds; batches run from milliseconds (a few items) to minutes (GiBs to a slow client)
BATCH_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
                 60, 120, 300)
TTFB_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
ENTRIES = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144)
OBJECT_SECONDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                  0.5, 1, 2.5, 10)
MOSS_PATH = "/v1/ml/moss"
OBJECTS_PATH = "/v1/objects/"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
READ_ATTEMPTS = 3


def multiprocess_dir(config):
    """The node's metrics directory: under the data dir's `.sys/`, one per port, so two nodes
    sharing a data dir do not mix (or wipe) each other's figures."""
    return os.path.join(os.path.abspath(config.data_dir), ".sys", "metrics", str(config.port))


def prepare_multiprocess(path):
    """Empty `path` and switch prometheus-client to files there; call in the master before
    any worker starts (the workers inherit the environment). A restarted node starts its
    counters from zero, as Prometheus expects of a restarted process."""
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    os.environ[MULTIPROC_ENV] = path
    _values_with_pid_taken_once()


def _values_with_pid_taken_once():
    """Have prometheus-client's multiprocess values take the pid once per process: by default
    they ask os.getpid() at every update, a system call that cost 3.5 us here, a third of
    what a counter update costs."""
    # The one way in, though no document names it as a setting: MultiProcessValue's docstring
    # (prometheus_client/values.py) documents its process_identifier argument, and the class
    # every metric made afterwards uses is the module's ValueClass, picked when the library
    # was first imported (it may have been already).
    from prometheus_client import values
    values.ValueClass = values.MultiProcessValue(_kept_pid())


def _kept_pid():
    """A function answering this process's pid without a system call: the pid is kept, and
    taken again in each child after a fork (prometheus-client's multiprocess mode keeps one
    file set per process, whatever the apps in it)."""
    pid = [os.getpid()]
    os.register_at_fork(after_in_child=lambda: pid.__setitem__(0, os.getpid()))
    return lambda: pid[0]


def mark_worker_dead(path, pid):
    """gunicorn's `child_exit`: a dead worker's live gauges leave the sum; its counters stay."""
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(pid, path)


class Metrics:
    """The metrics of one node (in one process). `multiproc_dir`: the shared directory of
    multiprocess mode, or None for this process's figures only."""

    def __init__(self, node_id, multiproc_dir=None):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.dir = multiproc_dir
        self.registry = CollectorRegistry(auto_describe=False)
        node = node_id.replace(".", "_")   # as AIStore writes its node_id label

        def counter(name, doc, labels=()):
            return Counter(name, doc, ("node_id",) + labels, registry=self.registry)

        def histogram(name, doc, buckets, labels=()):
            return Histogram(name, doc, ("node_id",) + labels, buckets=buckets,
                             registry=self.registry)

        self.ais = {name: counter(name, doc).labels(node) for name, doc in AIS_COUNTERS}
        self.batch_seconds = histogram(
            "getbatch_batch_duration_seconds",
            "GetBatch requests: from the request to the end of the response body",
            BATCH_SECONDS).labels(node)
        self.ttfb_seconds = histogram(
            "getbatch_batch_ttfb_seconds",
            "GetBatch requests: from the request until the response starts (validation and "
            "planning done)", TTFB_SECONDS).labels(node)
        self.entries = histogram("getbatch_batch_entries", "entries per GetBatch request",
                                 ENTRIES).labels(node)
        self.running = Gauge("getbatch_batches_running", "GetBatch responses being sent now",
                             ("node_id",), multiprocess_mode="livesum",
                             registry=self.registry).labels(node)
        self.rejected = counter("getbatch_http_429",
                                "requests answered 429 Too Many Requests", ("path",))
        self.rejected_batch = self.rejected.labels(node, "moss")
        self.rejected_other = self.rejected.labels(node, "other")
        ops = ("get", "put")
        requests = counter("getbatch_object_requests", "object GET/PUT requests answered",
                           ("op",))
        errors = counter("getbatch_object_errors", "object GET/PUT requests answered 4xx/5xx",
                         ("op",))
        nbytes = counter("getbatch_object_bytes",
                         "object bytes sent by GET (or promised: Content-Length) and received "
                         "by PUT (bodies with a Content-Length)", ("op",))
        seconds = histogram("getbatch_object_duration_seconds",
                            "object GET/PUT: from the request until the response starts (a "
                            "PUT is stored by then)", OBJECT_SECONDS, ("op",))
        # children bound once: a request costs no label lookups
        self.objects = {op.upper(): (requests.labels(node, op), errors.labels(node, op),
                                     nbytes.labels(node, op), seconds.labels(node, op))
                        for op in ops}

    # -- counting

    def batch_failed(self):
        """A GetBatch answered with an error before its status line."""
        self.ais["ais_target_getbatch_count"].inc()
        self.ais["ais_target_err_getbatch_count"].inc()

    def batch_rejected(self):
        """A GetBatch refused with 429: a hard error for AIS, never a batch."""
        self.rejected_batch.inc()
        self.ais["ais_target_err_getbatch_count"].inc()

    def batch_started(self, out, t0, now):
        """A GetBatch response starts (its body `out`, a BatchOutput): time to first byte, and
        the rest counted when the body closes."""
        self.ttfb_seconds.observe(now - t0)
        self.running.inc()
        out.also_on_close(lambda o: self.batch_done(o, t0))

    def batch_done(self, out, t0):
        """A GetBatch body closed: sent whole, or aborted (then counted as a failure, its
        items not as delivered)."""
        self.running.dec()
        items = out.plan.items
        self.batch_seconds.observe(time.monotonic() - t0)
        self.entries.observe(len(items))
        ais = self.ais
        ais["ais_target_getbatch_count"].inc()
        if not out.completed:
            ais["ais_target_err_getbatch_count"].inc()
            return
        obj_n = obj_b = file_n = file_b = soft = 0
        for it in items:
            size = it.size
            if it.err is not None:
                soft += 1
            elif size:
                # a whole object (or its range) is read from a store Source; an archived file
                # from its shard (decompressed, or a range of the shard's own file)
                if it.shard is None and isinstance(it.src, Source):
                    obj_n += 1
                    obj_b += size
                else:
                    file_n += 1
                    file_b += size
        for name, v in (("ais_target_getbatch_gfn_count", out.plan.gfn),
                        ("ais_target_getbatch_obj_count", obj_n),
                        ("ais_target_getbatch_obj_bytes", obj_b),
                        ("ais_target_getbatch_file_count", file_n),
                        ("ais_target_getbatch_file_bytes", file_b),
                        ("ais_target_err_soft_getbatch_count", soft)):
            if v:
                ais[name].inc(v)

    def object_done(self, method, status, nbytes, seconds):
        requests, errors, sent, latency = self.objects[method]
        requests.inc()
        if status >= 400:
            errors.inc()
            return
        if nbytes:
            sent.inc(nbytes)
        latency.observe(seconds)

    # -- exporting

    def families(self):
        """Every metric family of the node (all its processes in multiprocess mode)."""
        if self.dir is None:
            return list(self.registry.collect())
        from prometheus_client.multiprocess import MultiProcessCollector
        for attempt in range(READ_ATTEMPTS):
            # a worker that is starting has created its file but not yet sized it (reading
            # it fails), and child_exit removes a dead worker's gauge files: skip the empty
            # ones, and read again if a file changed under the reader
            files = [f for f in glob.glob(os.path.join(self.dir, "*.db")) if _size(f) >= 8]
            try:
                return list(MultiProcessCollector.merge(files, accumulate=True))
            except (OSError, struct.error):
                if attempt == READ_ATTEMPTS - 1:
                    raise

    def render(self):
        """The Prometheus text exposition (version 0.0.4) of every family."""
        from prometheus_client import generate_latest
        from prometheus_client.utils import floatToGoString

        ais_lines, rest = [], []
        for fam in self.families():
            # `_created` samples exist only in single-process mode; leave them out in both
            fam.samples = [s for s in fam.samples if not s.name.endswith("_created")]
            if fam.name not in _AIS_NAMES:
                rest.append(fam)
                continue
            doc = fam.documentation.replace("\\", r"\\").replace("\n", r"\n")
            ais_lines.append(f"# HELP {fam.name} {doc}\n# TYPE {fam.name} counter\n")
            for s in fam.samples:
                ais_lines.append(f"{fam.name}{_labels(s.labels)} {floatToGoString(s.value)}\n")
        return "".join(ais_lines).encode() + generate_latest(_Families(rest))


def _size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _labels(labels):
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items())) + "}"


def _escape(value):
    return str(value).replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')


class _Families:
    """A collector over families already collected (prometheus-client's writer wants one)."""

    def __init__(self, families):
        self._families = families

    def collect(self):
        return self._families


class MetricsResource:
    """GET /metrics."""

    def __init__(self, metrics):
        self.metrics = metrics

    def on_get(self, req, resp):
        from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4
        resp.content_type = CONTENT_TYPE_PLAIN_0_0_4
        resp.data = self.metrics.render()


class MetricsMiddleware:
    """Counts GetBatch and object GET/PUT requests as they are answered, and every 429."""

    def __init__(self, metrics):
        self.metrics = metrics

    def process_request(self, req, resp):
        req.context.t0 = time.monotonic()

    def process_response(self, req, resp, resource, req_succeeded):
        t0 = getattr(req.context, "t0", None)
        if t0 is None:
            return
        m = self.metrics
        status = resp.status_code
        path = req.path
        if path.startswith(MOSS_PATH):
            if req.method != "GET":
                return
            throttled = req.context.get("throttle_ns")
            if throttled:
                m.ais["ais_target_getbatch_throttle_ns"].inc(throttled)
            if status == 429:
                m.batch_rejected()
            elif status >= 400:
                m.batch_failed()
            elif isinstance(resp.stream, BatchOutput):
                m.batch_started(resp.stream, t0, time.monotonic())
            return
        if status == 429:
            m.rejected_other.inc()
        if path.startswith(OBJECTS_PATH) and req.method in m.objects:
            if req.method == "GET":
                n = resp.content_length
                nbytes = int(n) if n is not None else len(resp.data or b"")
            else:
                nbytes = req.content_length or 0
            m.object_done(req.method, status, nbytes, time.monotonic() - t0)


def install(app, node_id):
    """Serve /metrics on `app` and count its requests, labelled `node_id` (on a cluster, the
    node's id in the cluster map)."""
    metrics = Metrics(node_id, os.environ.get(MULTIPROC_ENV) or None)
    app.add_middleware(MetricsMiddleware(metrics))
    app.add_route("/metrics", MetricsResource(metrics))
    return metrics
