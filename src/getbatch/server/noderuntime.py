"""NodeRuntime: what an app keeps in memory while it serves, made once per app.

`create_app` makes one (in the gunicorn worker process, after the fork: nothing of it is
inherited) and passes its parts to the resources that use them; no module holds any of it, so
two apps in one process (the nodes of tests/cluster/inproc.py) share nothing.

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
