"""Exceptions raised by the store layer.

The server maps each class to an HTTP status and sends `str(exc)` as the AIS error
message, so the wording matters: the AIS SDK classifies a 404/409 by a regex over the
body, where `<provider>://<b>` followed by `/` means an object and anything else a bucket.
"""
from __future__ import annotations

from ..redact import redact


class StoreError(Exception):
    """Base class of every store error. `bucket` and `name` are set where meaningful (an
    InvalidName's `name` is the offending value, whatever its type)."""

    bucket: str | None = None
    name: object = None


class BucketNotFound(StoreError):
    def __init__(self, bucket: str, provider: str = "ais", detail: str = "") -> None:
        self.bucket = bucket
        self.provider = provider
        super().__init__(f'bucket "{provider}://{bucket}" does not exist{detail}')


class BucketExists(StoreError):
    def __init__(self, bucket: str, provider: str = "ais") -> None:
        self.bucket = bucket
        self.provider = provider
        super().__init__(f'bucket "{provider}://{bucket}" already exists')


class ObjectNotFound(StoreError):
    def __init__(self, bucket: str, name: str, provider: str = "ais") -> None:
        self.bucket = bucket
        self.name = name
        self.provider = provider
        super().__init__(f"{provider}://{bucket}/{name} does not exist")


class InvalidName(StoreError, ValueError):
    """A bucket name, object name or archpath breaks the naming rules (see `names`).

    `what` is "bucket name", "object name" or "archpath"; `name` is the offending
    string, `reason` says which rule it breaks.
    """

    def __init__(self, what: str, name: object, reason: str, bucket: str | None = None) -> None:
        self.what = what
        self.name = name
        self.reason = reason
        self.bucket = bucket
        super().__init__(f"invalid {what} {_quote(name)}: {reason}")


def _quote(name: object) -> str:
    """The name as one line of text can show it: quoted, with control characters and lone
    surrogates escaped, and very long names shortened."""
    if not isinstance(name, str):
        return repr(name)
    text = name if len(name) <= 200 else f"{name[:120]}...({len(name)} characters)"
    if text.isprintable():
        try:
            text.encode("utf-8")  # lone surrogates (undecodable bytes) fail here
            return f'"{text}"'
        except UnicodeEncodeError:
            pass
    return '"' + text.encode("unicode_escape").decode("ascii") + '"'


class InvalidProvider(StoreError, ValueError):
    """A provider name that is not one of AIS's."""

    def __init__(self, provider: object) -> None:
        self.provider = provider
        super().__init__(f'invalid bucket provider {_quote(provider)} '
                         '(expecting ais, aws/s3, gcp/gs, azure/az, oci/oc or ht)')


class NotRemote(StoreError):
    """Prefetch or evict on a bucket that is not a cache of a remote store (AIS refuses
    them on its own `ais://` buckets too)."""

    def __init__(self, action: str, bucket: str, provider: str = "ais") -> None:
        self.bucket = bucket
        self.provider = provider
        super().__init__(f"{action}: {provider}://{bucket} is not a remote bucket (prefetch and "
                         "evict apply to buckets cached from a remote store, like aws://)")


class Conflict(StoreError):
    """The name collides with the filesystem layout: an object `a` and an object `a/b`
    cannot both exist, because `a` would have to be a file and a directory."""

    def __init__(self, msg: str, bucket: str | None = None, name: str | None = None) -> None:
        self.bucket = bucket
        self.name = name
        super().__init__(msg)


class BadAppendHandle(StoreError, ValueError):
    """An append/flush named a handle that is malformed, unknown (flushed, expired) or
    that belongs to another object."""

    def __init__(self, bucket: str, name: str, handle: str,
                 reason: str = "unknown or expired handle") -> None:
        self.bucket = bucket
        self.name = name
        self.handle = handle
        super().__init__(f"invalid append handle {_quote(handle)} for ais://{bucket}/{name}: {reason}")


class IncompleteUpload(StoreError):
    """The request body ended before `length` bytes arrived; nothing was stored."""

    def __init__(self, bucket: str, name: str, expected: int, received: int) -> None:
        self.bucket = bucket
        self.name = name
        self.expected = expected
        self.received = received
        super().__init__(
            f"ais://{bucket}/{name}: upload incomplete, received {received} of {expected} bytes")


class InsufficientStorage(StoreError):
    """The filesystem is full (or over quota): nothing was stored, the old version is intact."""

    def __init__(self, bucket: str, name: str | None) -> None:
        self.bucket = bucket
        self.name = name
        super().__init__(f"cannot store ais://{bucket}/{name}: no space left on the node's "
                         "data disk; nothing was stored")


class Unavailable(StoreError):
    """A service the operation needs (on a cluster: etcd, or every node holding the object)
    cannot be reached now; worth retrying (503)."""


# ---- remote backends (S3, HTTP origins)

class AccessDenied(StoreError):
    """The remote store refused the credentials this node uses (403)."""

    def __init__(self, provider: str, bucket: str, name: str | None = None,
                 detail: str = "") -> None:
        self.bucket = bucket
        self.name = name
        where = f"{provider}://{bucket}" + (f"/{name}" if name else "")
        super().__init__(f"access to {where} denied by the remote store{detail}")


class RemoteUnavailable(Unavailable):
    """The remote store cannot be reached or failed (503): names the endpoint tried (never
    the credentials a URL may carry)."""

    failure = "is unreachable or failing"

    def __init__(self, provider: str, endpoint: str, reason: str, bucket: str | None = None,
                 name: str | None = None) -> None:
        self.bucket = bucket
        self.name = name
        self.endpoint = redact(endpoint)
        super().__init__(redact(f"{provider} backend at {endpoint} {self.failure}: {reason}"))


class RemoteBadAnswer(RemoteUnavailable):
    """The remote store answered, but not what was asked (502): bytes of another range, a
    body shorter than it announced, a malformed header, a refused redirect. Nothing of that
    answer was served or cached."""

    failure = "answered wrongly"


class RemoteChanged(Conflict):
    """The remote object was replaced while this node was reading it (409): nothing of the
    new version was mixed into what was read."""

    def __init__(self, provider: str, bucket: str, name: str) -> None:
        super().__init__(f"{provider}://{bucket}/{name} changed while being read; try again",
                         bucket, name)


class NotSupported(StoreError):
    """An operation this backend cannot do (400), e.g. append on an S3 bucket."""
