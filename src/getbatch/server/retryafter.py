"""Retry-After: the one place that says how long a refused client should wait, per cause.

Every 429 and 503 the server sends carries it. The AIS SDK (urllib3 underneath) retries 429 and
503 five times and, without the header, backs off 0, 6, 12, 24 and 48 s: a client would sit out
six seconds or more of a one-second condition, and 90 s before it gives up. With the header it
waits what the header says, so the value is a guess of how long the cause lasts, and five times
it is how long a client keeps trying (urllib3 honours the header on 429 and 503 only, so the
server keeps those two statuses for conditions that pass).
"""
from ..cluster.membership import LEASE_TTL

# seconds, whole (HTTP's delta-seconds; urllib3 reads nothing else)
SECONDS = {
    "batches": 1,      # every batch slot is taken: a running batch ends within about one
    "connections": 1,  # max_client_connections: the client's own connections close
    "memory": 2,       # min_free_memory: page cache and ending batches give memory back
    "disk": 5,         # min_free_disk: caches evict, temp files of ending batches go
    "jobs": 2,         # too many jobs running: batches and builds end
    "remote": 1,       # the remote store failed or is away, after the node's own retries (~1-3 s)
    "cluster": 2,      # etcd unreachable, or too few nodes took a write
    "peer": LEASE_TTL, # a node is unreachable: within a lease TTL the map drops it
}
DEFAULT = 1


def retry_after(cause=None):
    """The Retry-After value (text) for `cause`, a key of SECONDS; DEFAULT for any other."""
    return str(SECONDS.get(cause, DEFAULT))
