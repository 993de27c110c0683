"""Exceptions raised by the store layer.

The server maps each class to an HTTP status and sends `str(exc)` as the AIS error
message, so the wording matters: the AIS SDK classifies a 404/409 by a regex over the
body, where `ais://<b>` followed by `/` means an object and anything else a bucket.
"""


class StoreError(Exception):
    """Base class of every store error. `bucket` and `name` are set where meaningful."""

    bucket = None
    name = None


class BucketNotFound(StoreError):
    def __init__(self, bucket):
        self.bucket = bucket
        super().__init__(f'bucket "ais://{bucket}" does not exist')


class BucketExists(StoreError):
    def __init__(self, bucket):
        self.bucket = bucket
        super().__init__(f'bucket "ais://{bucket}" already exists')


class ObjectNotFound(StoreError):
    def __init__(self, bucket, name):
        self.bucket = bucket
        self.name = name
        super().__init__(f"ais://{bucket}/{name} does not exist")


class InvalidName(StoreError, ValueError):
    """A bucket name, object name or archpath breaks the naming rules (see `names`).

    `what` is "bucket name", "object name" or "archpath"; `name` is the offending
    string, `reason` says which rule it breaks.
    """

    def __init__(self, what, name, reason, bucket=None):
        self.what = what
        self.name = name
        self.reason = reason
        self.bucket = bucket
        super().__init__(f'invalid {what} "{name}": {reason}')


class Conflict(StoreError):
    """The name collides with the filesystem layout: an object `a` and an object `a/b`
    cannot both exist, because `a` would have to be a file and a directory."""

    def __init__(self, msg, bucket=None, name=None):
        self.bucket = bucket
        self.name = name
        super().__init__(msg)


class BadAppendHandle(StoreError, ValueError):
    """An append/flush named a handle that is malformed, unknown (flushed, expired) or
    that belongs to another object."""

    def __init__(self, bucket, name, handle, reason="unknown or expired handle"):
        self.bucket = bucket
        self.name = name
        self.handle = handle
        super().__init__(f'invalid append handle "{handle}" for ais://{bucket}/{name}: {reason}')


class IncompleteUpload(StoreError):
    """The request body ended before `length` bytes arrived; nothing was stored."""

    def __init__(self, bucket, name, expected, received):
        self.bucket = bucket
        self.name = name
        self.expected = expected
        self.received = received
        super().__init__(
            f"ais://{bucket}/{name}: upload incomplete, received {received} of {expected} bytes")
