"""GetBatch jobs: every GetBatch a node answers as the DT is a job one can watch.

A job lives in the memory of the worker process that runs it (`BatchJob`, one small object
per batch: the request path only sets a few attributes, never writes a file). Each process
keeps a `BatchJobs` table: its running jobs and its last `KEEP` finished ones. A flusher
thread per process writes the table to one file, `<dir>/<pid>.json` (atomically: temp file
and rename), after a state change (at most `MIN_GAP` apart, so a stream of tiny batches costs
a few writes a second in all) and every `FLUSH_EVERY` seconds while a job runs, with the
progress read from the batch's output then (entries and bytes sent): so the cost is per
flush, not per batch nor per item. A query reads its own process from memory and the other
processes' files: any worker answers for the whole node, at most `FLUSH_EVERY` behind.

Why not the job Registry's file per job: a file written at each state change is two or three
writes and renames per batch, as much as a whole 1-entry batch costs. A record whose process
is gone is read as aborted, as the Registry does.

States: planning (validation, planning, on a cluster the owners' plans), streaming (the
status line is out), then done, failed (an error answer, or a server-side failure
mid-stream) or aborted (the client went away, or stopped reading past `send_timeout`, or
someone stopped it).

Stopping a job (`abort`) leaves a marker file `<dir>/<id>.abort` that any process may write;
the flusher of the process running the job, awake every FLUSH_EVERY while a job runs, finds
it and shuts the job's client connection down: the batch ends as if the client had left (an
aborted stream, never a valid-looking archive) and the job says it was stopped on request.
"""
import errno
import logging
import os
import socket
import threading
import time
from collections import deque

import msgspec

from ..batch.ids import BatchIds
from .registry import process_alive

KIND = "get-batch"
PLANNING, STREAMING, DONE, FAILED, ABORTED = "planning", "streaming", "done", "failed", "aborted"
RUNNING_STATES = (PLANNING, STREAMING)
KEEP = 256            # finished jobs each process keeps
FLUSH_EVERY = 0.5     # seconds between writes of a process's running jobs' progress
MIN_GAP = 0.2         # seconds at least between two writes of a process's file
STALE_FILE = 3600     # seconds: the file of a process gone this long ago is deleted
# errors of a send to the client: it went away or stopped reading
_CLIENT_GONE = frozenset({errno.EPIPE, errno.ECONNRESET, errno.ETIMEDOUT, errno.ENOTCONN,
                          errno.ESHUTDOWN, errno.ECONNABORTED})
_enc = msgspec.json.Encoder()
log = logging.getLogger("getbatch.jobs")


class BatchJob:
    """One GetBatch. Set by the request path at state changes only; progress is read from
    `out` (its BatchOutput) by whoever looks."""

    __slots__ = ("id", "node", "client", "user", "bucket", "provider", "state", "total", "size",
                 "start_ns", "end_ns", "error", "out", "gather", "entries", "nbytes", "soft",
                 "gfn", "fmt", "sock", "stopped")

    def __init__(self, job_id, node, client, bucket, provider, user=""):
        self.id = job_id
        self.node = node
        self.client = client or ""
        self.user = user
        self.bucket = bucket or ""
        self.provider = provider if bucket else ""
        self.state = PLANNING
        self.total = self.size = None
        self.start_ns = time.time_ns()
        self.end_ns = 0
        self.error = ""
        self.out = None
        self.entries = self.nbytes = self.soft = self.gfn = 0
        self.fmt = ""
        self.sock = None        # the client's socket, where the server gives it (abort)
        self.stopped = False    # stopped on request (abort)

    def record(self):
        """The job as JSON-able dict (what the API answers)."""
        out = self.out
        if self.state == STREAMING and out is not None:
            self.entries, self.nbytes = out.done, out.sent
            self.gfn = out.plan.gfn
        return {"id": self.id, "kind": KIND, "node": self.node, "pid": os.getpid(),
                "state": self.state, "bucket": self.bucket, "provider": self.provider,
                "entries": self.entries, "total": self.total, "bytes": self.nbytes,
                "size": self.size, "soft_errors": self.soft, "gfn": self.gfn,
                "client": self.client, "user": self.user, "format": self.fmt, "start_ns": self.start_ns,
                "end_ns": self.end_ns, "error": self.error}


class BatchJobs:
    """The GetBatch jobs of this process, and the reader of every process of the node.
    `directory`: the node's (one per node: nodes may share a data dir)."""

    def __init__(self, directory, node_id, ids: BatchIds):
        """`ids`: the app's BatchIds, which its jobs' ids are drawn from."""
        self.dir = directory
        self.node_id = node_id
        self.ids = ids
        self._running = {}
        self._finished = deque(maxlen=KEEP)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._dirty = False      # a state changed since the last write
        self._flusher = None     # (pid, thread): started on the first job of a process
        os.makedirs(directory, exist_ok=True)

    # -- the request path

    def start(self, client, bucket, provider, user=""):
        """A new job in state planning; `user`: the token's, with auth on."""
        job = BatchJob(self.ids.next(), self.node_id, client, bucket, provider, user)
        with self._lock:
            self._running[job.id] = job
        self._changed()
        return job

    def streaming(self, job, out):
        """Planning is done: `out` (a BatchOutput) is about to be sent."""
        job.total = len(out.plan.items)
        job.size = out.content_length
        job.fmt = out.fmt
        job.out = out
        job.state = STREAMING
        self._changed()

    def failed(self, job, message):
        """Planning failed: the request gets an error answer (`message`)."""
        self._end(job, FAILED, message)

    def closed(self, job, out):
        """The body is closed: sent whole, cut by the client, or failed mid-stream."""
        job.entries, job.nbytes, job.gfn = out.done, out.sent, out.plan.gfn
        if out.plan.req.coer:   # without coer a missing item fails the batch: none to count
            job.soft = out.plan.soft_errors
        exc = out.error
        if out.completed:
            self._end(job, DONE, "")
        elif job.stopped:
            self._end(job, ABORTED, "stopped on request")
        elif exc is None or isinstance(exc, OSError) and exc.errno in _CLIENT_GONE:
            # no error: the server stopped iterating because the client was gone
            self._end(job, ABORTED, f"the client ({job.client}) went away or stopped reading"
                      + (f": {_message(exc)}" if exc is not None else ""))
        else:
            self._end(job, FAILED, _message(exc))

    def forget(self, job):
        """Not a job of this node after all (redirected to another)."""
        with self._lock:
            self._running.pop(job.id, None)
        self._changed()

    def _end(self, job, state, error):
        job.state, job.error, job.end_ns = state, error, time.time_ns()
        job.out = job.sock = None   # the output holds the plan's items: not kept past the batch
        if job.stopped:
            self._unmark(job.id)
        with self._lock:
            self._running.pop(job.id, None)
            self._finished.append(job)
        self._changed()

    def _changed(self):
        pid = os.getpid()
        if self._flusher is None or self._flusher[0] != pid:
            with self._lock:
                if self._flusher is None or self._flusher[0] != pid:
                    t = threading.Thread(target=self._flush_loop, name="batch-jobs",
                                         daemon=True)
                    self._flusher = (pid, t)
                    t.start()
        self._dirty = True
        self._wake.set()

    # -- the flusher

    def _flush_loop(self):
        self._forget_dead()
        while True:
            self._wake.wait(FLUSH_EVERY)
            self._wake.clear()
            self._stop_marked()
            if self._dirty or self._running:   # running: its progress moves
                self._dirty = False
                try:
                    self._flush()
                except Exception:   # a full disk must not end the thread (nor the process)
                    log.exception("cannot write the GetBatch jobs of process %d", os.getpid())
            time.sleep(MIN_GAP)

    # -- stopping

    def _marker(self, job_id):
        return os.path.join(self.dir, f"{job_id}.abort")

    def _unmark(self, job_id):
        try:
            os.unlink(self._marker(job_id))
        except FileNotFoundError:
            pass

    def abort(self, job_id):
        """Ask the running job `job_id` (in any process of the node) to stop; its record, or
        None when this node has no such job. A finished job is left as it is."""
        rec = next((r for r in self.list(finished=True) if r["id"] == job_id), None)
        if rec is not None and rec["state"] in RUNNING_STATES:
            open(self._marker(job_id), "w").close()
            self._wake.set()
        return rec

    def _stop_marked(self):
        """Shut down the client connection of each running job of this process that was
        asked to stop (the flusher, every FLUSH_EVERY while jobs run)."""
        with self._lock:
            running = list(self._running.values())
        for job in running:
            if not job.stopped and os.path.exists(self._marker(job.id)):
                job.stopped = True
                log.info("GetBatch %s of %s stopped on request", job.id, job.client)
                sock = job.sock
                if sock is not None:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

    def local(self):
        """This process's records: running jobs, then finished ones."""
        with self._lock:
            jobs = list(self._running.values()) + list(self._finished)
        return [j.record() for j in jobs]

    def _flush(self):
        path = os.path.join(self.dir, f"{os.getpid()}.json")
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(_enc.encode(self.local()))
        os.replace(tmp, path)

    def _forget_dead(self):
        """Delete the files of processes gone more than STALE_FILE seconds ago, and stop
        markers older than that (their job ended before its process saw them)."""
        now = time.time()
        for pid, path in self._files():
            try:
                if not process_alive(pid) and now - os.stat(path).st_mtime > STALE_FILE:
                    os.unlink(path)
            except OSError:
                pass
        for name in os.listdir(self.dir):
            path = os.path.join(self.dir, name)
            try:
                if name.endswith(".abort") and now - os.stat(path).st_mtime > STALE_FILE:
                    os.unlink(path)
            except OSError:
                pass

    # -- queries

    def _files(self):
        for name in os.listdir(self.dir):
            stem, dot, ext = name.partition(".")
            if ext == "json" and stem.isdigit():
                yield int(stem), os.path.join(self.dir, name)

    def list(self, finished=False):
        """The node's jobs (running only, unless `finished`), oldest first."""
        me = os.getpid()
        recs = self.local()
        for pid, path in self._files():
            if pid == me:
                continue
            try:
                with open(path, "rb") as f:
                    theirs = msgspec.json.decode(f.read())
            except (OSError, msgspec.DecodeError):
                continue   # gone meanwhile
            if not process_alive(pid):
                for r in theirs:
                    if r["state"] in RUNNING_STATES:
                        r.update(state=ABORTED, end_ns=r["end_ns"] or _mtime_ns(path),
                                 error=f"the server process running it (pid {pid}) exited "
                                       "before the batch finished")
            recs += theirs
        if not finished:
            recs = [r for r in recs if r["state"] in RUNNING_STATES]
        return sorted(recs, key=lambda r: r["start_ns"])


def _message(exc):
    return str(exc) or type(exc).__name__


def _mtime_ns(path):
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return time.time_ns()
