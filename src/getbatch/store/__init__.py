"""getbatch.store: the storage interface, its backends, and bucket routing by provider.

`backend.py` defines the interface every backend implements (`Backend`, `Source`,
`BatchReader`); `router.py` routes a bucket to its backend by provider; `local.py` is the
`ais` backend over a local data directory. No HTTP here: the server maps these exceptions
to AIS-style responses.
"""
from ..archive import ShardMemory
from .attrs import ObjectAttrs
from .backend import Backend, BatchReader, Source
from .errors import (BadAppendHandle, BucketExists, BucketNotFound, Conflict,
                     IncompleteUpload, InsufficientStorage, InvalidName, InvalidProvider,
                     NotRemote, ObjectNotFound, StoreError)
from .local import LocalStore
from .names import validate_archpath, validate_bucket_name, validate_object_name
from .providers import normalize_provider
from .router import Storage

__all__ = [
    "Backend", "BatchReader", "Source", "Storage", "LocalStore", "ObjectAttrs",
    "StoreError", "BucketNotFound", "BucketExists", "ObjectNotFound", "InvalidName",
    "InvalidProvider", "NotRemote", "Conflict", "BadAppendHandle", "IncompleteUpload",
    "InsufficientStorage",
    "validate_bucket_name", "validate_object_name", "validate_archpath", "normalize_provider",
    "open_storage",
]


def open_storage(config):
    """The Storage a node serves with `config`: the local data directory as `ais`, S3 as
    `aws` (always: its endpoint and credentials may come from the environment alone), and
    HTTP origins as `ht` when `ht_origins` names some. The backends keep their parsed
    shards in one ShardMemory of `index_memory` bytes."""
    memory = ShardMemory(config.index_memory)
    backends = {"ais": LocalStore(config.data_dir, inflate_cache=config.inflate_cache,
                                  shard_memory=memory)}
    backends.update(_remote_backends(config, memory))
    return Storage(backends)


def _remote_backends(config, memory):
    from .remote import RemoteStore
    from .s3 import S3Client
    common = dict(cache_bytes=config.remote_cache, inflate_cache=config.inflate_cache,
                  inflight=config.remote_inflight, shard_memory=memory)
    # a request thread and every GetBatch fetch of each may hold a connection at once
    pool = config.threads * (1 + config.remote_inflight) + 2 * config.remote_inflight
    out = {"aws": RemoteStore(S3Client(config.s3_endpoint, config.s3_region, pool,
                                       config.s3_path_style), config.data_dir, **common)}
    if config.ht_origins:
        from .http import HttpClient, parse_origins
        out["ht"] = RemoteStore(HttpClient(parse_origins(config.ht_origins), pool,
                                           config.ht_redirects), config.data_dir, **common)
    return out
