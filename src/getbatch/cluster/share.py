"""This node's share of the cluster's `ais` buckets: what peers reach at `/v1/_peer/...`.

A bucket exists cluster-wide (in etcd's bucket table); a node holds a local directory for it
once it is used here. `LocalShare` is the local store with those directories made on first
use, and with destroy meaning "drop the local copy". Writes may carry the stamp of the
version they copy (newest stamp wins, see store/stamps.py), and a name deleted here answers
`Tombstoned`, which tells a reader the delete's stamp.
"""
from typing import Any

from ..archive import InflateBudget, Shard
from ..store.attrs import ObjectAttrs
from ..store.backend import Backend, Readable, Source
from ..store.errors import BucketExists, BucketNotFound, ObjectNotFound, StoreError
from ..store.local import LocalStore
from ..store.local_read import LocalBatchReader
from ..store.names import validate_bucket_name
from .buckets import BucketTable
from .peers import TOMB_HEADER


class Tombstoned(ObjectNotFound):
    """The name is not here because a delete stamped `stamp` removed it."""

    def __init__(self, bucket: str, name: str, stamp: str) -> None:
        super().__init__(bucket, name)
        self.stamp = stamp
        self.headers = {TOMB_HEADER: stamp}


class LocalShare(Backend):
    """The local store, for buckets that exist in the cluster table (`buckets`)."""

    provider = "ais"

    def __init__(self, local: LocalStore, buckets: BucketTable) -> None:
        self.local = local
        self.buckets = buckets

    def _dir(self, bucket: str) -> None:
        """Make the bucket's local directory if the cluster has the bucket."""
        if not self.local.has_bucket(bucket):
            validate_bucket_name(bucket)
            meta = self.buckets.require(bucket)
            try:
                self.local.create_bucket(bucket)
            except BucketExists:
                return
            # which incarnation of the name this directory holds (catchup.py compares it)
            if getattr(meta, "create_revision", 0):
                self.local.set_bucket_id(bucket, meta.create_revision)

    def list_buckets(self) -> list[str]:
        return self.buckets.names()

    def has_bucket(self, name: str) -> bool:
        return self.local.has_bucket(name) or self.buckets.get(name) is not None

    def create_bucket(self, name: str) -> None:
        self._dir(name)

    def destroy_bucket(self, name: str) -> None:
        """Drop the local copy of a bucket (gone from the table, or going)."""
        try:
            self.local.destroy_bucket(name)
        except BucketNotFound:
            pass

    def bucket_gone(self, name: str, create_revision: int) -> None:
        """The cluster's bucket `name` made at `create_revision` is no more: drop the local
        copy, unless it is known to be of a newer incarnation of the name."""
        if self.local.bucket_id(name) in ("", str(create_revision)):
            self.destroy_bucket(name)

    def _missing(self, bucket: str, name: str) -> ObjectNotFound:
        stamp = self.local.tombs.get(bucket, name)
        return Tombstoned(bucket, name, stamp) if stamp else ObjectNotFound(bucket, name)

    def stat(self, bucket: str, name: str) -> ObjectAttrs:
        self._dir(bucket)
        try:
            return self.local.stat(bucket, name)
        except ObjectNotFound:
            raise self._missing(bucket, name) from None

    def open(self, bucket: str, name: str) -> tuple[Source, ObjectAttrs]:
        self._dir(bucket)
        try:
            return self.local.open(bucket, name)
        except ObjectNotFound:
            raise self._missing(bucket, name) from None

    def put(self, bucket: str, name: str, stream: Readable, length: int | None = None,
            stamp: str | None = None) -> ObjectAttrs:
        self._dir(bucket)
        return self.local.put(bucket, name, stream, length, stamp)

    def append(self, bucket: str, name: str, handle: str, stream: Readable,
               length: int | None = None) -> str:
        self._dir(bucket)
        return self.local.append(bucket, name, handle, stream, length)

    def flush(self, bucket: str, name: str, handle: str) -> ObjectAttrs:
        self._dir(bucket)
        return self.local.flush(bucket, name, handle)

    def delete(self, bucket: str, name: str, stamp: str | None = None,
               keep: bool = False) -> tuple[str, bool]:
        self._dir(bucket)
        return self.local.delete(bucket, name, stamp, keep)

    def list_objects(self, bucket: str, prefix: str = "", page_size: int = 0, token: str = "",
                     start_after: str = "", with_meta: bool = False) -> tuple[list[ObjectAttrs], str]:
        self._dir(bucket)
        return self.local.list_objects(bucket, prefix, page_size, token, start_after, with_meta)

    def open_shard(self, bucket: str, name: str, budget: InflateBudget | None = None) -> Shard:
        self._dir(bucket)
        return self.local.open_shard(bucket, name, budget)

    def shard_index_state(self, bucket: str, name: str) -> tuple[str, Any, int] | None:
        self._dir(bucket)
        return self.local.shard_index_state(bucket, name)

    def batch_reader(self, n_entries: int,
                     budget: InflateBudget | None = None) -> "_ShareReader":
        return _ShareReader(self, n_entries, budget)


class _ShareReader(LocalBatchReader):
    """The local store's GetBatch reads, for a share: a bucket of the cluster that has no
    directory here yet holds nothing here (a missing object, looked for on other nodes),
    not a missing bucket. Only lookups that fail pay for the check."""

    def __init__(self, share: LocalShare, n_entries: int, budget: InflateBudget | None) -> None:
        super().__init__(share.local, n_entries, budget)
        self.buckets = share.buckets

    def _absent(self, bucket: str, name: str) -> StoreError:
        if self.buckets.get(bucket) is None:
            return BucketNotFound(bucket)
        return ObjectNotFound(bucket, name)

    def source(self, bucket: str, name: str) -> Source:
        try:
            return super().source(bucket, name)
        except BucketNotFound:
            raise self._absent(bucket, name) from None

    def shard(self, bucket: str, name: str) -> Shard:
        try:
            return super().shard(bucket, name)
        except BucketNotFound:
            raise self._absent(bucket, name) from None
