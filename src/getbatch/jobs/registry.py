"""The job registry: one small JSON record per job under the data dir's `.sys/jobs/`.

gunicorn runs several worker processes; a job runs in a thread of the one that received the
request, and the SDK may poll its status through any of them. So the record is a file the
running job rewrites (atomically: temp file and rename) when it starts, every
`_SAVE_EVERY` seconds of progress and when it ends, and any process reads. A record that
says "running" while the process that runs it is gone is read as aborted, with the reason.
At most `keep` finished records are kept: starting a job removes the oldest beyond that.

A record is general on purpose (id, kind, bucket, state, counts, start/end, error), so
GetBatch and cluster rebalance jobs can be recorded the same way.
"""
import json
import os
import re
import secrets
import threading
import time

RUNNING, FINISHED, FAILED, ABORTED = "running", "finished", "failed", "aborted"
_SAVE_EVERY = 0.5  # seconds between progress writes of a running job
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


class TooManyJobs(RuntimeError):
    def __init__(self, limit, bucket=""):
        where = (f"on bucket {bucket} of this node already, the most one bucket runs at once "
                 "(setting max_bucket_jobs)" if bucket else
                 "on this node already, the most it runs at once")
        super().__init__(f"{limit} jobs are running {where}; retry when some have finished")


class JobNotFound(LookupError):
    def __init__(self, job_id):
        self.job_id = job_id
        super().__init__(f'job "{job_id}" does not exist (finished long ago, or never started '
                         'on this node)')


def new_id():
    """A short random id (AIS style: letters and digits)."""
    return "".join(secrets.choice(_ALNUM) for _ in range(10))


class Job:
    """A running job's handle: counts progress and writes its record."""

    def __init__(self, registry, record):
        self._registry = registry
        self.record = record
        self._saved = 0.0
        self._lock = threading.Lock()

    @property
    def id(self):
        return self.record["id"]

    def add(self, objects=0, nbytes=0, errors=0):
        r = self.record
        with self._lock:
            r["objects"] += objects
            r["bytes"] += nbytes
            r["errors"] += errors
            now = time.monotonic()
            if now - self._saved >= _SAVE_EVERY:
                self._saved = now
                self._registry.save(r)

    def abort_requested(self):
        """True once someone asked this job to stop (Registry.abort)."""
        return os.path.exists(self._registry.path(self.id) + ".abort")

    def finish(self, error="", aborted=False):
        r = self.record
        with self._lock:
            r["state"] = ABORTED if aborted else (FAILED if error else FINISHED)
            r["error"] = error
            r["end_ns"] = time.time_ns()
            self._registry.save(r)
        try:
            os.unlink(self._registry.path(self.id) + ".abort")
        except FileNotFoundError:
            pass


class Registry:
    def __init__(self, directory, keep=256, max_running=64, max_per_bucket=None):
        self.dir = directory
        self.keep = keep
        self.max_running = max_running
        self.max_per_bucket = max_per_bucket or max_running
        os.makedirs(directory, exist_ok=True)

    def path(self, job_id):
        return os.path.join(self.dir, job_id + ".json")

    def start(self, kind, bucket="", provider="", total=None):
        """Record a new running job of `kind` (e.g. "delete-listrange") on `provider://bucket`
        and return its Job handle; TooManyJobs when `max_running` jobs run already, or
        `max_per_bucket` on that bucket."""
        self._prune(bucket, provider)
        rec = {"id": new_id(), "kind": kind, "bucket": bucket, "provider": provider,
               "state": RUNNING, "objects": 0, "bytes": 0, "errors": 0, "total": total,
               "start_ns": time.time_ns(), "end_ns": 0, "error": "", "pid": os.getpid()}
        self.save(rec)
        return Job(self, rec)

    def save(self, rec):
        tmp = f"{self.path(rec['id'])}.{os.getpid()}.{threading.get_ident()}.tmp"
        with open(tmp, "w") as f:
            json.dump(rec, f)
        os.replace(tmp, self.path(rec["id"]))

    def get(self, job_id):
        """The record of job `job_id`; JobNotFound when there is none."""
        if not isinstance(job_id, str) or not _ID.fullmatch(job_id):
            raise JobNotFound(job_id)
        try:
            with open(self.path(job_id)) as f:
                rec = json.load(f)
        except (FileNotFoundError, ValueError):
            # ValueError: a record cut short by a crash mid-write is no record
            raise JobNotFound(job_id) from None
        if rec["state"] == RUNNING and not process_alive(rec["pid"]):
            rec.update(state=ABORTED, end_ns=rec["end_ns"] or int(os.stat(self.path(job_id))
                                                                   .st_mtime_ns),
                       error=rec["error"] or f"the server process running it (pid {rec['pid']}) "
                                             "exited before the job finished")
        return rec

    def list(self, kind=""):
        """Records of every job kept (of `kind` if given), oldest first."""
        out = []
        for name in os.listdir(self.dir):
            if name.endswith(".json"):
                try:
                    rec = self.get(name[:-5])
                except JobNotFound:
                    continue
                if not kind or rec["kind"] == kind:
                    out.append(rec)
        return sorted(out, key=lambda r: r["start_ns"])

    def abort(self, job_id):
        """Ask a running job to stop; JobNotFound if there is no such job."""
        rec = self.get(job_id)
        if rec["state"] == RUNNING:
            open(self.path(job_id) + ".abort", "w").close()
        return rec

    def _prune(self, bucket="", provider=""):
        """Drop the oldest finished records beyond `keep`; TooManyJobs when too many run (on
        the node, or on `provider`://`bucket`)."""
        recs = self.list()
        done = [r for r in recs if r["state"] != RUNNING]
        if len(recs) - len(done) >= self.max_running:
            raise TooManyJobs(self.max_running)
        if bucket and sum(1 for r in recs if r["state"] == RUNNING and r["bucket"] == bucket
                          and r["provider"] == provider) >= self.max_per_bucket:
            raise TooManyJobs(self.max_per_bucket, f"{provider}://{bucket}")
        for rec in done[:max(0, len(done) - self.keep + 1)]:
            for suffix in (".json", ".json.abort"):
                try:
                    os.unlink(os.path.join(self.dir, rec["id"] + suffix))
                except FileNotFoundError:
                    pass


def process_alive(pid):
    """True while a process `pid` exists (a job's, on this machine)."""
    try:
        os.kill(pid, 0)  # PermissionError: alive, another user's
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True
