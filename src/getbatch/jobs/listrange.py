"""Multi-object jobs: delete, prefetch, evict or index (shardindex.py) a list of names, a
template, or a prefix.

What the SDK's `bucket.objects(...)` sends: `{"objnames": [...]}` or `{"template": "..."}`
(prefetch adds `coer`, `latest-ver`, ...). The selection is checked before the job starts,
so a malformed one is a 400 and no job; the job then runs in a thread and records its
progress in the Registry. As on AIS: a name listed explicitly that does not exist is an
error of the job (it still goes on with the others), one produced by a template or prefix is
skipped; delete and evict go on after any error, prefetch stops at the first one unless
`coer` is set. The job's error names how many objects failed and the first few.

Bounds: a template expands to at most `max_template` names (a 400 beyond: a typo such as
`x-{0..999999999999}` would run for days), a job handles at most `rate` names a second
(setting job_rate: four unthrottled jobs over missing names slowed the node's object GETs
12x), and every job stops within `_ABORT_CHECK_EVERY` of an abort request, however slow.
"""
import functools
import logging
import threading
import time

from ..archive import ArchiveError
from ..store.errors import BucketNotFound, NotRemote, ObjectNotFound, StoreError
from ..store.names import validate_object_name
from . import shardindex
from .template import MAX_NAMES, Template, TemplateError

DELETE, PREFETCH, EVICT = "delete-listrange", "prefetch-listrange", "evict-listrange"
INDEX = shardindex.KIND
KINDS = (DELETE, PREFETCH, EVICT, INDEX)
_SHOW_ERRORS = 3          # errors quoted in a job's error message
_ABORT_CHECK_EVERY = 0.2  # seconds between checks for an abort request
_NAP_MIN = 0.01           # a throttled job sleeps once it is this far ahead (fewer, longer naps)
log = logging.getLogger("getbatch.jobs")


class SelectionError(ValueError):
    pass


class Selection:
    """The objects a job applies to: explicit `names`, or a Template (range or prefix) of at
    most `max_template` names."""

    def __init__(self, value, max_names, max_template=MAX_NAMES):
        if not isinstance(value, dict):
            raise SelectionError("malformed multi-object request: \"value\" must be an object "
                                 'with "objnames" or "template"')
        names, template = value.get("objnames"), value.get("template")
        if (names is None) == (template is None):
            raise SelectionError('a multi-object request names its objects with exactly one of '
                                 '"objnames" (a list) or "template" (a string)')
        self.names = self.template = None
        if names is not None:
            if not isinstance(names, list) or not names:
                raise SelectionError('"objnames" must be a non-empty list of object names')
            if len(names) > max_names:
                raise SelectionError(f'"objnames" lists {len(names)} objects, over the limit of '
                                     f"{max_names} (setting max_entries); use a template")
            for n in names:
                validate_object_name(n)
            self.names = names
        else:
            try:
                self.template = Template(template, max_template, "max_template")
            except TemplateError as exc:
                raise SelectionError(str(exc)) from None

    def total(self):
        if self.names is not None:
            return len(self.names)
        return None if self.template.is_prefix else self.template.count()

    def items(self, backend, bucket):
        """(name, explicit) for each object selected in `bucket` of `backend`, in order."""
        if self.names is not None:
            return ((n, True) for n in self.names)
        if not self.template.is_prefix:
            return ((n, False) for n in self.template)
        return _by_prefix(backend, bucket, self.template.text)


def _by_prefix(backend, bucket, prefix):
    token = ""
    while True:
        page, token = backend.list_objects(bucket, prefix=prefix, token=token)
        for a in page:
            yield a.name, False
        if not token:
            return


def checked_selection(kind, backend, bucket, value, max_names, max_template=MAX_NAMES):
    """The Selection of ActionMsg value `value` on an existing `bucket`: SelectionError for
    a malformed one, BucketNotFound."""
    try:
        selection = Selection(value, max_names, max_template)
    except SelectionError as exc:
        raise SelectionError(f"{kind} on {backend.provider}://{bucket}: {exc}") from None
    backend.require_bucket(bucket)
    return selection


def start_checked(registry, kind, backend, bucket, value, max_names, max_template=MAX_NAMES,
                  rate=0, max_inflate=0):
    """Start job `kind` on `bucket` for the selection `value` (the ActionMsg value) once it
    is checked: SelectionError for a malformed one, BucketNotFound, NotRemote for prefetch
    or evict on a bucket that is not remote. `rate`: names a second at most (0: no limit);
    `max_inflate`: what an index build may decompress per shard. Returns the job id."""
    selection = checked_selection(kind, backend, bucket, value, max_names, max_template)
    if kind in (PREFETCH, EVICT) and not backend.remote:
        raise NotRemote(kind, bucket, backend.provider)
    return start(registry, kind, backend, bucket, selection, coer=bool(value.get("coer")),
                 rate=rate, max_inflate=max_inflate)


def start(registry, kind, backend, bucket, selection, coer=False, rate=0, max_inflate=0):
    """Start job `kind` over `selection` in a thread; returns its id at once."""
    job = registry.start(kind, bucket, backend.provider, total=selection.total())
    op = {DELETE: backend.delete, PREFETCH: backend.prefetch, EVICT: backend.evict,
          INDEX: functools.partial(shardindex.index_one, backend, max_inflate)}[kind]
    stop_at_first = kind == PREFETCH and not coer
    t = threading.Thread(target=_run, name=f"job-{job.id}", daemon=True,
                         args=(job, op, bucket, selection.items(backend, bucket), stop_at_first,
                               rate))
    t.start()
    return job.id


def _run(job, op, bucket, items, stop_at_first, rate=0):
    errors, n_err = [], 0
    checked = due = time.monotonic()
    pace = 1.0 / rate if rate > 0 else 0.0

    def abort_seen(now):
        nonlocal checked
        if now - checked < _ABORT_CHECK_EVERY:
            return False
        checked = now
        if not job.abort_requested():
            return False
        job.finish(_errors(n_err, errors) or "aborted on request", aborted=True)
        return True

    try:
        for name, explicit in items:
            now = time.monotonic()
            if pace:
                # `due`: when this name may go; ahead of it, sleep in naps short enough to
                # see an abort in time; a slow stretch banks at most a second of credit
                due = max(due + pace, now - 1.0)
                while due - now > _NAP_MIN:
                    time.sleep(min(due - now, _ABORT_CHECK_EVERY))
                    now = time.monotonic()
                    if abort_seen(now):
                        return
            if abort_seen(now):
                return
            try:
                size = op(bucket, name)
            except ObjectNotFound as exc:
                if not explicit:
                    continue
                err = exc
            except BucketNotFound:
                raise  # ends the job (below): no object can follow
            except (StoreError, ArchiveError, OSError) as exc:
                err = exc
            else:
                if size is not shardindex.SKIPPED:
                    job.add(objects=1, nbytes=size or 0)
                continue
            n_err += 1
            job.add(errors=1)
            if len(errors) < _SHOW_ERRORS:
                errors.append(str(err))
            if stop_at_first:
                break
    except Exception as exc:  # the bucket went away, a listing failed: the job ends here
        log.warning("job %s (%s) stopped: %s", job.id, job.record["kind"], exc)
        before = _errors(n_err, errors)
        job.finish(f"stopped: {exc}" + (f"; before that, {before}" if before else ""))
        return
    job.finish(_errors(n_err, errors))


def _errors(n, shown):
    if not n:
        return ""
    more = f" (and {n - len(shown)} more)" if n > len(shown) else ""
    return f"{n} object{'s' if n > 1 else ''} failed: " + "; ".join(shown) + more
