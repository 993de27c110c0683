"""Shard indexes as an explicit job, as `ais bucket shard-index build` and `... summary` do.

A batch that names a member of a shard whose index is not built yet builds it inside the batch
(a scan of every header, a whole decompression pass for .tgz and .tar.lz4): the first epoch
over 10,000 cold shards pays 10,000 builds. `index-shards` (a bucket action, a job of the
node: listrange.py runs it, watched and aborted like the other multi-object jobs) builds them
ahead over a prefix or a template; `summary` says how far a bucket is: shards, indexed (an
index of the current version is persisted), stale (one of another version), members and
bytes. Objects whose names carry no archive extension (.tar, .tgz, .tar.gz, .tar.lz4, .zip)
are not shards here and are skipped.
"""
from ..archive import ArchiveError, InflateBudget
from ..archive.formats import format_from_name
from ..store.errors import ObjectNotFound

KIND = "index-shards"
SKIPPED = object()   # what index_one answers for an object that is not a shard


def index_one(backend, max_inflate, bucket, name):
    """Index shard `name` (each decompressing at most `max_inflate` bytes; 0: no limit);
    its size, or SKIPPED when `name` is not a shard."""
    if format_from_name(name) is None:
        return SKIPPED
    return backend.index_shard(bucket, name, InflateBudget(max_inflate) if max_inflate else None)


def summary(backend, bucket, names):
    """The index summary of the shards among `names` ((name, explicit) pairs, as a
    listrange.Selection yields them): shards, indexed, stale, members (of the indexed
    ones), bytes (of every shard), indexed_bytes, and errors (shards that could not be
    looked at, the first few named). None when the backend keeps no index it can show."""
    out = {"shards": 0, "indexed": 0, "stale": 0, "members": 0, "bytes": 0, "indexed_bytes": 0,
           "errors": 0, "first_errors": []}
    for name, _ in names:
        if format_from_name(name) is None:
            continue
        try:
            found = backend.shard_index_state(bucket, name)
        except ObjectNotFound:
            continue
        except ArchiveError as exc:
            out["errors"] += 1
            if len(out["first_errors"]) < 3:
                out["first_errors"].append(str(exc))
            continue
        if found is None:
            return None
        state, members, size = found
        out["shards"] += 1
        out["bytes"] += size
        if state == "fresh":
            out["indexed"] += 1
            out["members"] += members
            out["indexed_bytes"] += size
        elif state == "stale":
            out["stale"] += 1
    return out
