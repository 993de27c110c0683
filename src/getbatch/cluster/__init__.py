"""getbatch.cluster: nodes that cooperate through etcd.

`smap.py` is the immutable cluster map a request works with (nodes and their URLs) and HRW
placement over it; `etcd.py` a small etcd v3 JSON-gateway client; `membership.py` the lease a
node registers under and the watches that keep each worker's map current; `node.py` a node's
view of its cluster (id, secret, map, peers); `peers.py` the one HTTP client towards peers
(pooled connections, TLS, the cluster secret, what counts as a peer being down);
`buckets.py` the bucket table in etcd; `store.py` the cluster's `ais` backend (HRW over
`share.py`, this node's share, and `peer_backend.py`, a peer as a backend);
`gather.py` plans and sends a GetBatch over the owners of its entries (a single node is a
cluster of one), reading peers' shares through `peerwire.py` and `peerstream.py`;
`rebalance.py`; `devcluster.py` (`getbatch cluster`).
"""
from .smap import NodeInfo, Smap

__all__ = ["NodeInfo", "Smap"]
