"""NodeRuntime: what an app keeps in memory while it serves, made once per app.

`create_app` makes one and passes its parts to the resources that use them; no module holds
any of it, so two apps in one process (the nodes of tests/cluster/inproc.py) share nothing.
Under `getbatch serve` the app is made in each gunicorn worker, after the fork; a WSGI server
that preloads getbatch.server.wsgi forks after, so the parts that cannot be shared by two
processes (the look-ahead threads, the batch ids' random prefix) renew themselves in a child.

Here: the batch ids (batch/ids.py), the look-ahead threads (batch/warmup.py) and peer
compression's last verdict (cluster/peerzip.py). What belongs to an object the app is given
lives there: each store's fd budget and ShardMemory (parsed shard indexes, made by
store.open_storage), a cluster node's peer connections (its Cluster). Not to be confused with
getbatch.runtime, the settings that may change while a node runs.
"""
from ..batch.ids import BatchIds
from ..batch.warmup import WarmPool
from ..cluster.peerzip import Verdict


class NodeRuntime:
    def __init__(self) -> None:
        self.batch_ids = BatchIds()
        self.warm_pool = WarmPool()
        self.peer_compression = Verdict()
