"""GetBatch reads on a cluster, item by item: the local share first, then the ranked peers.

Correct for every format and mode, but not fast: each remote object or shard is copied into an
unlinked local temp file when first read (the emit loop reads fds). The two-phase cluster
GetBatch replaces this for peers.
"""
import os

from ..store.backend import BatchReader, Source
from ..store.errors import BucketNotFound, ObjectNotFound, Unavailable
from .peer_backend import PeerSource


def fetch_to_scratch(src, local):
    """An fd of an unlinked temp file of `local` holding all of `src`."""
    fd = local.scratch_fd()
    try:
        with open(fd, "wb", closefd=False) as f:
            for data in src.chunks(0, src.size):
                f.write(data)
    except BaseException:
        os.close(fd)
        raise
    return fd


class _FetchedSource(Source):
    """A peer's object for the emit loop, which reads fds: fetched into a local temp file
    when first read (lazy, so a batch holds only a window of them at once)."""

    __slots__ = ("peer_src", "local", "size", "fd")
    lazy = True

    def __init__(self, peer_src, local):
        self.peer_src = peer_src
        self.local = local
        self.size = peer_src.size
        self.fd = -1

    def fileno(self):
        if self.fd < 0:
            self.fd = fetch_to_scratch(self.peer_src, self.local)
        return self.fd

    def pread(self, length, offset):
        return os.pread(self.fileno(), length, offset)

    def close(self):
        self.peer_src.close()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class ClusterBatchReader(BatchReader):
    """GetBatch reads on a cluster, item by item: the local share first, then the ranked
    peers. (Correct but not fast: the two-phase cluster GetBatch replaces it for peers.)"""

    def __init__(self, store, n_entries, budget=None):
        super().__init__(store, budget)
        self.local = store.share.batch_reader(n_entries, budget)

    def source(self, bucket, name):
        try:
            return self.local.source(bucket, name)
        except (ObjectNotFound, BucketNotFound):
            pass
        for node, backend in self.backend._ranked(bucket, name):
            if backend is self.backend.share:
                continue
            try:
                attrs = backend.stat(bucket, name)
            except (ObjectNotFound, Unavailable):
                continue
            return _FetchedSource(PeerSource(backend, bucket, name, attrs.size),
                                  self.backend.share.local)
        raise ObjectNotFound(bucket, name)

    def shard(self, bucket, name):
        key = (bucket, name)
        shard = self._shards.get(key)
        if shard is None:
            try:
                shard = self.local.shard(bucket, name)
            except (ObjectNotFound, BucketNotFound):
                # a peer's shard, copied into an unlinked local temp file for this request
                shard = self.backend.open_shard(bucket, name, self.budget)
            self._shards[key] = shard
        return shard

    def close(self):
        super().close()
        self.local.close()
