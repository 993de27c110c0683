"""Buckets and objects: the local-filesystem store, its name rules and its errors.

No HTTP here: the server maps these exceptions to AIS-style responses.
"""
from .attrs import ObjectAttrs
from .errors import (BadAppendHandle, BucketExists, BucketNotFound, Conflict,
                     IncompleteUpload, InvalidName, ObjectNotFound, StoreError)
from .local import LocalStore
from .names import validate_archpath, validate_bucket_name, validate_object_name

__all__ = [
    "LocalStore", "ObjectAttrs",
    "StoreError", "BucketNotFound", "BucketExists", "ObjectNotFound", "InvalidName",
    "Conflict", "BadAppendHandle", "IncompleteUpload",
    "validate_bucket_name", "validate_object_name", "validate_archpath",
]
