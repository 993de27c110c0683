"""Jobs over HTTP: /v1/cluster job status, stats and abort (as `client.job(id)` asks), and
/v1/jobs, the GetBatch jobs of a node or of the whole cluster (`getbatch show job`).

The SDK starts a multi-object job with a bucket action (buckets.py: `DELETE /v1/buckets/<b>`
with `{"action": "delete-listrange" | "evict-listrange", "value": selection}`, `POST` with
`prefetch-listrange`) and gets its id as the plain-text body. `client.job(id)` then asks
`GET /v1/cluster?what=status` (a JobStatus: uuid, err, end_time in ns, aborted) and
`?what=qryxstats` (JobSnaps by node, used to learn the kind and by `wait()` for some kinds),
each with JobArgs (`{"ID": ..., "Kind": ...}`) as the JSON body; `PUT /v1/cluster` with
`stop` aborts a job. Any worker process answers from the Registry.

With auth on, a job is seen and stopped only with the permission its bucket needs (`may_see`):
read for a GetBatch, admin for the multi-object jobs (only a bucket's admins start them).
Another job is "not found", word for word as a missing one, so a job cannot tell anyone that
a bucket they may not use exists, nor who reads it.
"""
import datetime
import time
from concurrent.futures import ThreadPoolExecutor

import msgspec

from ..auth.tokens import ADMIN, READ
from ..cluster.peers import PEER_PREFIX, PeerUnavailable
from ..jobs import JobNotFound
from ..batch.ids import BATCH_ID_PREFIX
from ..jobs.batchjobs import FLUSH_EVERY, MIN_GAP
from ..jobs.batchjobs import KIND as BATCH_KIND, RUNNING_STATES as BATCH_RUNNING
from ..jobs.registry import ABORTED, FINISHED, RUNNING
from ..jobs.shardindex import KIND as INDEX_KIND
from ..store import normalize_provider
from ..store.errors import StoreError
from .auth import grant_of
from .request_parts import read_action
from .errors import AISError

_enc = msgspec.json.Encoder()
_GO_ZERO_TIME = "0001-01-01T00:00:00Z"
_PEER_TIMEOUT = 10.0   # seconds a peer has to list its jobs


def _rfc3339(ns):
    if not ns:
        return _GO_ZERO_TIME
    t = datetime.datetime.fromtimestamp(ns / 1e9, datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def job_snap(rec):
    """An AIS JobSnap of a registry record, or of a GetBatch job's (entries for objects)."""
    done = rec["state"] != RUNNING and rec["state"] not in BATCH_RUNNING
    return {"id": rec["id"], "kind": rec["kind"], "start-time": _rfc3339(rec["start_ns"]),
            "end-time": _rfc3339(rec["end_ns"]),
            "bck": {"name": rec["bucket"], "provider": rec["provider"],
                    "namespace": {"uuid": "", "name": ""}} if rec["bucket"] else None,
            "stats": {"loc-objs": rec.get("objects", rec.get("entries", 0)),
                      "loc-bytes": rec["bytes"], "out-objs": 0,
                      "out-bytes": 0, "in-objs": 0, "in-bytes": 0},
            "aborted": rec["state"] == ABORTED, "is_idle": done,
            "abort-err": rec["error"] if rec["state"] == ABORTED else "", "glob.id": 0}


def job_status(rec):
    """An AIS JobStatus (what `client.job(id).status()` and `wait()` read)."""
    return {"uuid": rec["id"], "err": rec["error"], "end_time": rec["end_ns"],
            "aborted": rec["state"] == ABORTED}


def _as_batch_record(rec, node_id):
    """A registry record in the shape of a GetBatch job's (jobs/batchjobs.py)."""
    state = {RUNNING: "running", FINISHED: "done"}.get(rec["state"], rec["state"])
    return {"id": rec["id"], "kind": rec["kind"], "node": node_id, "pid": rec["pid"],
            "state": state, "bucket": rec["bucket"], "provider": rec["provider"],
            "entries": rec["objects"], "total": rec["total"], "bytes": rec["bytes"],
            "size": None, "soft_errors": 0, "errors": rec["errors"], "gfn": 0, "client": "",
            "user": "", "format": "", "start_ns": rec["start_ns"], "end_ns": rec["end_ns"],
            "error": rec["error"]}


def may_see(req, rec):
    """Whether the request may see (and stop) the job of record `rec` (always, with auth
    off). A job of no bucket (a GetBatch whose entries name their buckets, a cluster job) is
    its own user's, or needs the permission on every bucket (`*`)."""
    grant = grant_of(req)
    if grant is None:
        return True
    need = READ if rec.get("kind") == BATCH_KIND else ADMIN
    if not rec.get("bucket"):
        return ((rec.get("kind") == BATCH_KIND and rec.get("user") == grant.sub)
                or need in grant.perms.get("*", ""))
    try:
        provider = normalize_provider(rec.get("provider") or "ais")
    except StoreError:
        return False
    return grant.allows(provider, rec["bucket"], need)


def _job_args(args):
    """(id, kind) of JobArgs (`{"ID": ..., "Kind": ..., ...}`)."""
    if not isinstance(args, dict):
        raise AISError(400, "malformed job request: expecting JobArgs ({\"ID\": ..., "
                            "\"Kind\": ...})")
    job_id, kind = args.get("ID") or "", args.get("Kind") or ""
    if not isinstance(job_id, str) or not isinstance(kind, str):
        raise AISError(400, 'malformed job request: "ID" and "Kind" must be strings')
    return job_id, kind


class JobQueries:
    """/v1/cluster: job status and stats queries, job abort. `batch_jobs`: the node's
    BatchJobs, whose GetBatch jobs answer status and stop too (this node's: a GetBatch is a
    job of the node it was sent to)."""

    def __init__(self, registry, config, batch_jobs=None):
        self.registry = registry
        self.config = config
        self.batch_jobs = batch_jobs

    def _batch_job(self, req, job_id):
        """The record of GetBatch job `job_id` if the request may see it, or None. Another
        process's jobs are read from its file, up to a flush behind: a job not found is looked
        for again for that long, and one the request may not see is refused after as long
        (its answer must not be told apart from a missing job's, even by its time)."""
        deadline = time.monotonic() + FLUSH_EVERY + MIN_GAP
        while True:
            rec = next((r for r in self.batch_jobs.list(finished=True) if r["id"] == job_id),
                       None)
            if rec is not None and may_see(req, rec):
                return rec
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            time.sleep(min(left, 0.05) if rec is None else left)

    def _get(self, req, job_id):
        if self.batch_jobs is not None and job_id.startswith(BATCH_ID_PREFIX):
            rec = self._batch_job(req, job_id)
            if rec is None:
                raise AISError(404, str(JobNotFound(job_id)))
            return rec
        try:
            rec = self.registry.get(job_id)
        except JobNotFound as exc:
            raise AISError(404, str(exc)) from None
        if not may_see(req, rec):
            raise AISError(404, str(JobNotFound(job_id)))
        return rec

    def on_get(self, req, resp):
        what = req.get_param("what")
        job_id, kind = _job_args(read_action(req, self.config.max_body))
        if what == "status":
            if not job_id:
                raise AISError(400, "job status needs a job id (JobArgs \"ID\")")
            body = job_status(self._get(req, job_id))
        elif what == "qryxstats":
            recs = [self._get(req, job_id)] if job_id else self.registry.list(kind)
            body = {self.config.node_id: [job_snap(r) for r in recs
                                          if (not kind or r["kind"] == kind)
                                          and may_see(req, r)]}
        else:
            raise AISError(400, f'unsupported cluster query what="{what}" (supported: status, '
                                "qryxstats)")
        resp.content_type = "application/json"
        resp.data = _enc.encode(body)

    def on_put(self, req, resp):
        msg = read_action(req, self.config.max_body)
        if msg.get("action") != "stop":
            raise AISError(400, f"unsupported cluster action {msg.get('action')!r} (supported: "
                                "stop)")
        job_id, _ = _job_args(msg.get("value") or {})
        if not job_id:
            raise AISError(400, "stop needs a job id (JobArgs \"ID\")")
        rec = self._get(req, job_id)   # (a job the request may not see is not stopped)
        if rec["kind"] == BATCH_KIND:
            self.batch_jobs.abort(job_id)
            return
        try:
            self.registry.abort(job_id)
        except JobNotFound as exc:
            raise AISError(404, str(exc)) from None


class BatchJobsAPI:
    """GET /v1/jobs: the node's GetBatch jobs as JSON, running ones unless `all=true`; with
    `cluster=true` every node's, the receiving node asking each peer at
    /v1/_peer/jobs (the same resource, without the secret a client has not); it shows only
    the jobs the request may see (`may_see`). The answer:
    `{"jobs": [record, ...], "errors": {node id: why it did not answer}}`, oldest first;
    the record's fields are BatchJob.record's."""

    def __init__(self, jobs, cluster=None, registry=None, node_id=""):
        self.jobs = jobs
        self.cluster = cluster
        self.registry = registry
        self.node_id = node_id

    def _index_jobs(self, finished):
        """The node's shard-index builds, as GetBatch job records (`getbatch show job`)."""
        if self.registry is None:
            return []
        return [_as_batch_record(r, self.node_id) for r in self.registry.list(INDEX_KIND)
                if finished or r["state"] == RUNNING]

    def on_get(self, req, resp):
        finished = req.get_param_as_bool("all", default=False)
        recs, errors = self.jobs.list(finished) + self._index_jobs(finished), {}
        if req.get_param_as_bool("cluster", default=False) and self.cluster is not None:
            me = self.cluster.node.id
            peers = [n for n in self.cluster.smap.nodes if n.id != me]
            with ThreadPoolExecutor(max(1, min(len(peers), 8))) as pool:
                answers = pool.map(lambda n: self._ask(n, finished), peers)
                for node, (theirs, err) in zip(peers, answers):
                    recs += theirs
                    if err:
                        errors[node.id] = err
            recs.sort(key=lambda r: r["start_ns"])
        recs = [r for r in recs if may_see(req, r)]
        resp.content_type = "application/json"
        resp.data = _enc.encode({"jobs": recs, "errors": errors})

    def _ask(self, node, finished):
        """(the records of peer `node`, "") or ([], why not)."""
        try:
            r = self.cluster.peers.request(node, "GET", PEER_PREFIX + "/jobs",
                                           params={"all": str(finished).lower()},
                                           timeout=_PEER_TIMEOUT)
            if r.status_code != 200:
                return [], f"{node.url} answered {r.status_code}: {r.text.strip()[:200]}"
            return r.json()["jobs"], ""
        except PeerUnavailable as exc:
            return [], str(exc)
        except (ValueError, KeyError, TypeError):
            return [], f"{node.url} answered something that is not a job list"
