"""getbatch.store: the storage interface, its backends, and bucket routing by provider.

`backend.py` defines the interface every backend implements (`Backend`, `Source`,
`BatchReader`); `router.py` routes a bucket to its backend by provider; `local.py` is the
`ais` backend over a local data directory. No HTTP here: the server maps these exceptions
to AIS-style responses.
"""
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
    """The Storage a node serves with `config`: today, the local data directory as `ais`."""
    return Storage({"ais": LocalStore(config.data_dir, inflate_cache=config.inflate_cache)})
