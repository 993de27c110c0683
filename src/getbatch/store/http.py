"""The `ht` provider: read-only buckets whose objects are files of an HTTP(S) origin.

Each ht:// bucket is one origin URL given in the `ht_origins` setting (`name=URL,...`); object
`a/b.wav` of bucket `name` is `<URL>/a/b.wav`. `HttpClient` is the remote-store client a
`RemoteStore` (remote.py) caches and serves through, like the S3 one. Versions: the origin's
ETag when it sends one, else one made of Last-Modified and the size, so a cached copy is used
only while both are unchanged. Ranged reads send `Range`; an origin that ignores it (answers
200 with the whole file) is read past the bytes before the range. Buckets are not listed and
objects not written: those are 400s naming the provider.
"""
import calendar
import email.utils
import os
import threading
from urllib.parse import quote

from .errors import (AccessDenied, BucketNotFound, NotSupported, ObjectNotFound, RemoteChanged,
                     RemoteUnavailable)
from .remote import Meta, NotModified

_CHUNK = 1 << 20


def parse_origins(text):
    """{bucket: origin URL} from `name=URL,name=URL`; ValueError naming a bad pair."""
    out = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        name, sep, url = pair.partition("=")
        name, url = name.strip(), url.strip()
        if not sep or not name or not url.startswith(("http://", "https://")):
            raise ValueError(f"bad ht_origins entry {pair!r}: expecting name=http(s)://host/path")
        out[name] = url.rstrip("/")
    return out


class HttpClient:
    provider = "ht"

    def __init__(self, origins, pool=10):
        self.origins = dict(origins)
        self._pool = pool
        self._lock = threading.Lock()
        self._made = None  # (pid, requests.Session): one per process, made after the fork

    def _session(self):
        made = self._made
        if made is None or made[0] != os.getpid():
            with self._lock:
                made = self._made
                if made is None or made[0] != os.getpid():
                    import requests
                    s = requests.Session()
                    adapter = requests.adapters.HTTPAdapter(pool_connections=4,
                                                            pool_maxsize=self._pool)
                    s.mount("http://", adapter)
                    s.mount("https://", adapter)
                    made = self._made = (os.getpid(), s)
        return made[1]

    def _url(self, bucket, name):
        origin = self.origins.get(bucket)
        if origin is None:
            raise BucketNotFound(bucket, self.provider, " (no origin configured for it in "
                                 "ht_origins)")
        return f"{origin}/{quote(name)}"

    def _request(self, method, bucket, name, headers=None, stream=False):
        import requests
        url = self._url(bucket, name)
        try:
            r = self._session().request(method, url, headers=dict(
                {"Accept-Encoding": "identity"}, **(headers or {})), stream=stream,
                timeout=(5, 60), allow_redirects=True)
        except requests.RequestException as exc:
            raise RemoteUnavailable(self.provider, self.origins[bucket], str(exc), bucket,
                                    name) from None
        if r.status_code in (200, 206, 304):
            return r
        r.close()
        if r.status_code in (404, 410):
            raise ObjectNotFound(bucket, name, self.provider)
        if r.status_code in (401, 403):
            raise AccessDenied(self.provider, bucket, name, f" ({r.status_code})")
        if r.status_code == 412:
            raise RemoteChanged(self.provider, bucket, name)
        raise RemoteUnavailable(self.provider, self.origins[bucket],
                                f"{r.status_code} {r.reason} for {url}", bucket, name)

    @staticmethod
    def _meta(r, name, size):
        lm = r.headers.get("Last-Modified", "")
        parsed = email.utils.parsedate_tz(lm) if lm else None
        mtime = calendar.timegm(parsed[:9]) - (parsed[9] or 0) if parsed else 0
        etag = r.headers.get("ETag") or f'"lm:{lm}:{size}"'
        return Meta(name=name, size=size, etag=etag, mtime_ns=mtime * 10**9)

    def where(self, bucket):
        """The origin, for messages."""
        return self.origins.get(bucket, "(no origin)")

    # ---- buckets

    def list_buckets(self):
        return sorted(self.origins)

    def has_bucket(self, bucket):
        return bucket in self.origins

    def create_bucket(self, bucket):
        raise NotSupported("ht:// buckets are configured with ht_origins, not created")

    # ---- objects

    def head(self, bucket, name):
        r = self._request("HEAD", bucket, name)
        r.close()
        if "Content-Length" not in r.headers:
            raise RemoteUnavailable(self.provider, self.origins[bucket],
                                    f"no Content-Length for {name}", bucket, name)
        return self._meta(r, name, int(r.headers["Content-Length"]))

    def get(self, bucket, name, offset=0, length=None, if_match="", if_none_match=""):
        if if_none_match and self.head(bucket, name).etag == if_none_match:
            raise NotModified()
        headers = {}
        if length is not None:
            headers["Range"] = f"bytes={offset}-{offset + length - 1}"
        r = self._request("GET", bucket, name, headers, stream=True)
        if r.status_code == 206:
            size = int(r.headers.get("Content-Range", "/0").rpartition("/")[2] or 0)
        else:
            size = int(r.headers.get("Content-Length", -1))
        meta = self._meta(r, name, size)
        if size < 0 or (if_match and meta.etag != if_match):
            r.close()
            if size < 0:
                raise RemoteUnavailable(self.provider, self.origins[bucket],
                                        f"no Content-Length for {name}", bucket, name)
            raise RemoteChanged(self.provider, bucket, name)
        body = _Body(r, self, bucket, name)
        if length is not None and r.status_code == 200:
            body.skip(offset)  # the origin ignored Range
        return meta, body

    def put(self, bucket, name, fileobj, size, md5):
        raise NotSupported(f"ht://{bucket} is read-only: objects come from its HTTP origin")

    def delete(self, bucket, name):
        self.put(bucket, name, None, 0, b"")

    def list(self, bucket, prefix="", page_size=0, token="", start_after=""):
        raise NotSupported(f"ht://{bucket} cannot be listed: an HTTP origin has no listing")


class _Body:
    def __init__(self, resp, client, bucket, name):
        self.resp = resp
        self.client = client
        self.bucket = bucket
        self.name = name

    def read(self, n):
        try:
            return self.resp.raw.read(n)
        except OSError as exc:
            raise RemoteUnavailable(self.client.provider, self.client.origins[self.bucket],
                                    str(exc), self.bucket, self.name) from None

    def skip(self, n):
        while n > 0:
            data = self.read(min(n, _CHUNK))
            if not data:
                return
            n -= len(data)

    def close(self):
        self.resp.close()
