"""The `aws` provider (SDK alias `s3`): buckets of an S3-compatible store (AWS S3, MinIO, Ceph RGW).

`S3Client` is the remote-store client a `RemoteStore` (remote.py) caches and serves through;
it speaks S3 with boto3. Endpoint, region and credentials come from the standard boto3 chain
(AWS_ENDPOINT_URL, AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, profiles,
instance roles) unless the settings `s3_endpoint` / `s3_region` name them. Each server process
makes its own boto3 client on first use (a client made before gunicorn forks would share its
connections between processes); its connection pool is sized to the threads that may use it.
boto3 comes with the `s3` extra (pip install 'getbatch[s3]'); a node without it answers
requests on aws:// buckets with a 400 that says so. Errors become store errors: 404 missing,
403 denied, 503 unreachable (naming the endpoint), 502 for an answer that contradicts the
request (a Content-Range other than the range asked, a version other than the one pinned with
If-Match, a malformed size): see originreply.py.
"""
import base64
import calendar
import os
import threading

from .errors import (AccessDenied, BucketNotFound, NotSupported, ObjectNotFound,
                     RemoteBadAnswer, RemoteChanged, RemoteUnavailable)
from .originreply import BadReply, check_range
from .remote import Meta, NotModified

_SINGLE_PUT_MAX = 5 << 30   # S3's limit for one PutObject; bigger ones go multipart
_PAGE_MAX = 1000            # S3 returns at most this many keys per page



def _botocore_exceptions():
    """botocore's exception module; NotSupported naming the extra when boto3 is not installed."""
    try:
        from botocore import exceptions
    except ImportError:
        raise NotSupported("aws:// buckets need boto3, which this node does not have: "
                           "install the s3 extra (pip install 'getbatch[s3]')") from None
    return exceptions

class S3Client:
    provider = "aws"

    def __init__(self, endpoint="", region="", pool=40, path_style=False):
        self._endpoint = endpoint or None
        self._region = region or None
        self._pool = pool
        self._path_style = path_style
        self._lock = threading.Lock()
        self._made = None   # (pid, boto3 client)

    def _s3(self):
        made = self._made
        if made is None or made[0] != os.getpid():
            with self._lock:
                made = self._made
                if made is None or made[0] != os.getpid():
                    made = self._made = (os.getpid(), self._new_client())
        return made[1]

    def _new_client(self):
        _botocore_exceptions()   # says what to install when boto3 is missing
        import boto3
        from botocore.config import Config
        cfg = Config(max_pool_connections=self._pool, connect_timeout=5, read_timeout=60,
                     retries={"max_attempts": 3, "mode": "standard"},
                     s3={"addressing_style": "path"} if self._path_style else None)
        return boto3.session.Session().client("s3", endpoint_url=self._endpoint,
                                              region_name=self._region, config=cfg)

    @property
    def endpoint(self):
        try:
            return self._s3().meta.endpoint_url
        except Exception:  # no region or a bad endpoint: say what was configured
            return self._endpoint or "the default AWS S3 endpoint"

    def where(self, bucket):
        """The endpoint, for messages."""
        return self.endpoint

    # ---- errors

    def _error(self, exc, bucket, name=None):
        """The store error for a botocore exception met on bucket/name."""
        bx = _botocore_exceptions()
        if isinstance(exc, bx.ClientError):
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if status == 304:
                return NotModified()
            if code == "NoSuchBucket":
                return BucketNotFound(bucket, self.provider)
            if status == 404 or code in ("NoSuchKey", "404"):
                if name is None or not self.has_bucket(bucket):
                    return BucketNotFound(bucket, self.provider)
                return ObjectNotFound(bucket, name, self.provider)
            if status == 403 or code in ("AccessDenied", "403", "InvalidAccessKeyId",
                                         "SignatureDoesNotMatch"):
                return AccessDenied(self.provider, bucket, name, f" ({code})")
            if status == 412:
                return RemoteChanged(self.provider, bucket, name)
            return RemoteUnavailable(self.provider, self.endpoint, f"{status} {code}", bucket,
                                     name)
        if isinstance(exc, bx.NoCredentialsError):
            return AccessDenied(self.provider, bucket, name,
                                ": this node has no AWS credentials (AWS_ACCESS_KEY_ID, ...)")
        if isinstance(exc, (bx.NoRegionError,)):
            return RemoteUnavailable(self.provider, self._endpoint or "AWS S3",
                                     "no region configured (AWS_DEFAULT_REGION or s3_region)")
        if isinstance(exc, (bx.BotoCoreError, OSError)):
            return RemoteUnavailable(self.provider, self.endpoint, str(exc) or type(exc).__name__,
                                     bucket, name)
        return exc

    def _call(self, bucket, name, op, **kw):
        bx = _botocore_exceptions()
        try:
            return getattr(self._s3(), op)(**kw)
        except (bx.ClientError, bx.BotoCoreError, OSError) as exc:
            raise self._error(exc, bucket, name) from None
        except ValueError as exc:  # botocore parsing a malformed answer (a size "abc")
            raise RemoteBadAnswer(self.provider, self.endpoint, f"{exc} (for {name})", bucket,
                                  name) from None

    # ---- buckets

    def list_buckets(self):
        res = self._call("", None, "list_buckets")
        return sorted(b["Name"] for b in res.get("Buckets", []))

    def has_bucket(self, bucket):
        bx = _botocore_exceptions()
        try:
            self._s3().head_bucket(Bucket=bucket)
            return True
        except bx.ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status in (404, 400):
                return False
            raise self._error(exc, bucket) from None
        except (bx.BotoCoreError, OSError) as exc:
            raise self._error(exc, bucket) from None

    def create_bucket(self, bucket):
        kw = {}
        region = self._s3().meta.region_name
        if region and region != "us-east-1":
            kw["CreateBucketConfiguration"] = {"LocationConstraint": region}
        self._call(bucket, None, "create_bucket", Bucket=bucket, **kw)

    # ---- objects

    @staticmethod
    def _meta(res, name, size=None):
        mtime = res.get("LastModified")
        return Meta(name=name, size=res["ContentLength"] if size is None else size,
                    etag=res.get("ETag", ""),
                    mtime_ns=int(calendar.timegm(mtime.utctimetuple())) * 10**9 if mtime else 0)

    def head(self, bucket, name):
        return self._meta(self._call(bucket, name, "head_object", Bucket=bucket, Key=name), name)

    def get(self, bucket, name, offset=0, length=None, if_match="", if_none_match=""):
        """(Meta of the whole object, body with read(n)/close()) of bytes [offset,
        offset+length) (all when length is None); NotModified for a matching if_none_match."""
        kw = {"Bucket": bucket, "Key": name}
        if length is not None:
            kw["Range"] = f"bytes={offset}-{offset + length - 1}"
        if if_match:
            kw["IfMatch"] = if_match
        if if_none_match:
            kw["IfNoneMatch"] = if_none_match
        res = self._call(bucket, name, "get_object", **kw)
        size = None
        try:
            if length is not None:
                status = res.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if status != 206:
                    raise BadReply(f"{status} to a ranged GET (expecting 206)")
                size = check_range(res.get("ContentRange"), offset, length)
        except BadReply as exc:
            res["Body"].close()
            raise RemoteBadAnswer(self.provider, self.endpoint, f"{exc} (for {name})", bucket,
                                  name) from None
        meta = self._meta(res, name, size)
        if if_match and meta.etag != if_match:  # an endpoint that ignores If-Match
            res["Body"].close()
            raise RemoteChanged(self.provider, bucket, name)
        return meta, _Body(res["Body"], self, bucket, name)

    def put(self, bucket, name, fileobj, size, md5):
        """Store `size` bytes of `fileobj` (seekable); the new version's ETag once S3 has it."""
        if size <= _SINGLE_PUT_MAX:
            res = self._call(bucket, name, "put_object", Bucket=bucket, Key=name, Body=fileobj,
                             ContentLength=size, ContentMD5=base64.b64encode(md5).decode())
            return res["ETag"]
        self._call(bucket, name, "upload_fileobj", Fileobj=fileobj, Bucket=bucket, Key=name)
        return self.head(bucket, name).etag

    def delete(self, bucket, name):
        self.head(bucket, name)  # S3 deletes a missing key silently; AIS says 404
        self._call(bucket, name, "delete_object", Bucket=bucket, Key=name)

    def list(self, bucket, prefix="", page_size=0, token="", start_after=""):
        kw = {"Bucket": bucket, "MaxKeys": min(page_size, _PAGE_MAX) if page_size > 0 else
              _PAGE_MAX}
        if prefix:
            kw["Prefix"] = prefix
        if token:
            kw["ContinuationToken"] = token
        if start_after:
            kw["StartAfter"] = start_after
        res = self._call(bucket, None, "list_objects_v2", **kw)
        out = []
        for c in res.get("Contents", []):
            mtime = c.get("LastModified")
            out.append(Meta(name=c["Key"], size=c["Size"], etag=c.get("ETag", ""),
                            mtime_ns=int(calendar.timegm(mtime.utctimetuple())) * 10**9
                            if mtime else 0))
        return out, (res.get("NextContinuationToken") or "") if res.get("IsTruncated") else ""


class _Body:
    """A GET's streaming body; read errors become store errors."""

    def __init__(self, raw, client, bucket, name):
        self.raw = raw
        self.client = client
        self.bucket = bucket
        self.name = name

    def read(self, n):
        bx = _botocore_exceptions()
        try:
            return self.raw.read(n)
        except (bx.BotoCoreError, OSError) as exc:
            raise self.client._error(exc, self.bucket, self.name) from None

    def close(self):
        self.raw.close()
