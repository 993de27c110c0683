"""Plan datasets across a cluster: every node keeps a copy of each plan's dataset.

The node that makes a plan pushes the dataset to every other node (best effort); a node
without it (one that joined later, or missed the push) pulls it from the first node that has
it, and builds it from the listing only when none has. The listing alone is not enough: while
a dead node is still in the cluster map, a listing may miss its objects, and a dataset built
then would not match the record's digest (a 409 for every step). Each copy is checked
against the digest in the plan's record before it is used.
"""
import logging

from ..cluster.peers import PEER_PREFIX, PeerUnavailable

log = logging.getLogger("getbatch.cluster")
_TIMEOUT = 60.0   # seconds a peer may take to store or send a plan's dataset


class PlanCopies:
    def __init__(self, cluster):
        self.cluster = cluster

    def _others(self):
        me = self.cluster.node.id
        return [n for n in self.cluster.smap.nodes if n.id != me]

    def push(self, pid, data):
        for node in self._others():
            try:
                r = self.cluster.peers.request(node, "PUT", f"{PEER_PREFIX}/epochs/{pid}",
                                               data=data, timeout=_TIMEOUT)
                if r.status_code != 200:
                    log.warning("epoch plan %s: %s did not take its copy: %s %s", pid,
                                node.url, r.status_code, r.text.strip()[:200])
            except PeerUnavailable as exc:
                log.warning("epoch plan %s: no copy on %s: %s", pid, node.url, exc)

    def pull(self, pid):
        """The dataset bytes from the first node that has them, or None."""
        for node in self._others():
            try:
                r = self.cluster.peers.request(node, "GET", f"{PEER_PREFIX}/epochs/{pid}",
                                               timeout=_TIMEOUT)
            except PeerUnavailable:
                continue
            if r.status_code == 200:
                return r.content
        return None
