"""getbatch.cluster: nodes that cooperate through etcd.

`smap.py` is the immutable cluster map a request works with (nodes and their URLs) and HRW
placement over it. The rest of the package keeps that map current (membership in etcd), talks to
peers, and assembles batches whose items live on several nodes.
"""
from .smap import NodeInfo, Smap

__all__ = ["NodeInfo", "Smap"]
