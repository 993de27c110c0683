"""The `ht` provider: read-only buckets whose objects are files of an HTTP(S) origin.

Each ht:// bucket is one origin URL given in the `ht_origins` setting (`name=URL,...`); object
`a/b.wav` of bucket `name` is `<URL>/a/b.wav`. `HttpClient` is the remote-store client a
`RemoteStore` (remote.py) caches and serves through, like the S3 one. Versions: the origin's
ETag when it sends one, else one made of Last-Modified and the size, so a cached copy is used
only while both are unchanged. Ranged reads send `Range`; an origin that ignores it (answers
200 with the whole file) is read past the bytes before the range. Buckets are not listed and
objects not written: those are 400s naming the provider.

An origin is not trusted further than it must be: a 206 must name exactly the range asked
(originreply.py), labels (ETag, size) come from the answer that delivered the bytes, and a read
pinned to a version (If-Match) fails when another one answers. Redirects are refused unless
`ht_redirects` allows some, and even then never lead to a loopback, link-local or private
address unless the origin itself is one. Credentials in an origin URL (`user:pass@`) are sent
as basic auth to that origin only and never shown.
"""
import calendar
import email.utils
import ipaddress
import os
import socket
import threading
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit

from ..redact import redact
from .errors import (AccessDenied, BucketNotFound, NotSupported, ObjectNotFound, RemoteBadAnswer,
                     RemoteChanged, RemoteUnavailable)
from .originreply import BadReply, check_body_length, check_range, size_header
from .remote import Meta, NotModified

_CHUNK = 1 << 20


def parse_origins(text):
    """{bucket: origin URL} from `name=URL,name=URL`; ValueError naming a bad pair."""
    out = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        name, sep, url = pair.partition("=")
        name, url = name.strip(), url.strip()
        if not sep or not name or not url.startswith(("http://", "https://")):
            raise ValueError(redact(f"bad ht_origins entry {pair!r}: expecting "
                                    "name=http(s)://host/path"))
        out[name] = url.rstrip("/")
    return out


def split_credentials(url):
    """(URL without `user:pass@`, (user, password) or None)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    return (urlunsplit(parts._replace(netloc=netloc)),
            (unquote(parts.username or ""), unquote(parts.password or "")))


def _internal(host):
    """True when `host` is, or resolves to, an address that is not globally routable
    (loopback, link-local, private, reserved); True too when it cannot be resolved."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return True
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%")[0])
        if ip.version == 6 and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if not ip.is_global:
            return True
    return False


_REDIRECTS = (301, 302, 303, 307, 308)
_MADE_UP = '"lm:'   # the start of a version made of Last-Modified and size (no ETag sent)


class HttpClient:
    provider = "ht"

    def __init__(self, origins, pool=10, redirects=0):
        self.origins, self._auth = {}, {}
        for bucket, url in origins.items():
            self.origins[bucket], self._auth[bucket] = split_credentials(url)
        self._pool = pool
        self.redirects = redirects   # how many a request may follow (0: none)
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

    def _bad(self, bucket, name, reason):
        return RemoteBadAnswer(self.provider, self.origins[bucket], f"{reason} (for {name})",
                               bucket, name)

    def _request(self, method, bucket, name, headers=None, stream=False):
        import requests
        url = self._url(bucket, name)
        origin = urlsplit(url)
        headers = dict({"Accept-Encoding": "identity"}, **(headers or {}))
        for hop in range(self.redirects + 1):
            same = urlsplit(url)[:2] == origin[:2]   # credentials go to the origin only
            try:
                r = self._session().request(method, url, headers=headers, stream=stream,
                                            timeout=(5, 60), allow_redirects=False,
                                            auth=self._auth[bucket] if same else None)
            except (requests.RequestException, ValueError) as exc:
                raise RemoteUnavailable(self.provider, self.origins[bucket], str(exc), bucket,
                                        name) from None
            if r.status_code not in _REDIRECTS:
                break
            r.close()
            url = self._redirect_target(bucket, name, url, r.headers.get("Location", ""), hop)
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

    def _redirect_target(self, bucket, name, url, location, hop):
        """The URL a redirect leads to, if it may be followed: within ht_redirects hops, to
        http(s), and to a public address unless the origin itself is not public."""
        if hop >= self.redirects:
            raise self._bad(bucket, name, f"a redirect to {location!r}; ht_redirects="
                            f"{self.redirects} allows {self.redirects or 'none'}")
        target = urljoin(url, location)
        parts = urlsplit(target)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise self._bad(bucket, name, f"a redirect to {location!r}, not an http(s) URL")
        if _internal(parts.hostname) and not _internal(urlsplit(self.origins[bucket]).hostname):
            raise self._bad(bucket, name, f"a redirect to {parts.hostname}, an internal "
                            "(loopback, link-local, private) or unresolvable address: refused")
        return target

    @staticmethod
    def _meta(r, name, size):
        lm = r.headers.get("Last-Modified", "")
        parsed = email.utils.parsedate_tz(lm) if lm else None
        mtime = calendar.timegm(parsed[:9]) - (parsed[9] or 0) if parsed else 0
        etag = r.headers.get("ETag") or f'{_MADE_UP}{lm}:{size}"'
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
        try:
            size = size_header(r.headers.get("Content-Length"))
        except BadReply as exc:
            raise self._bad(bucket, name, str(exc)) from None
        if size is None:
            raise RemoteUnavailable(self.provider, self.origins[bucket],
                                    f"no Content-Length for {name}", bucket, name)
        return self._meta(r, name, size)

    def get(self, bucket, name, offset=0, length=None, if_match="", if_none_match=""):
        """(Meta from the very answer that carries the bytes, body) of bytes [offset,
        offset+length) (all when length is None); RemoteChanged when `if_match` is given
        and another version answers."""
        if if_none_match and self.head(bucket, name).etag == if_none_match:
            raise NotModified()
        headers = {}
        if length is not None:
            headers["Range"] = f"bytes={offset}-{offset + length - 1}"
        if if_match.startswith('"') and not if_match.startswith(_MADE_UP):
            headers["If-Match"] = if_match  # a strong ETag of the origin's: it may check it too
        r = self._request("GET", bucket, name, headers, stream=True)
        try:
            if r.status_code == 206 and length is not None:
                size = check_range(r.headers.get("Content-Range"), offset, length)
                check_body_length(r.headers.get("Content-Length"), offset, length, size)
            elif r.status_code == 200:
                size = size_header(r.headers.get("Content-Length"))
            else:
                raise BadReply(f"{r.status_code} to a GET without a Range")
        except BadReply as exc:
            r.close()
            raise self._bad(bucket, name, str(exc)) from None
        if size is None:
            r.close()
            raise RemoteUnavailable(self.provider, self.origins[bucket],
                                    f"no Content-Length for {name}", bucket, name)
        meta = self._meta(r, name, size)
        if if_match and meta.etag != if_match:
            r.close()
            raise RemoteChanged(self.provider, bucket, name)
        # the bytes this answer announced: the whole object (200) or the range (206)
        body = _Body(r, self, bucket, name, size if r.status_code == 200 else
                     min(offset + length, size) - offset)
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
    """The body of one GET; a read error or a body ending before the bytes its answer
    announced (`expect`) is a RemoteBadAnswer naming the origin."""

    def __init__(self, resp, client, bucket, name, expect):
        self.resp = resp
        self.client = client
        self.bucket = bucket
        self.name = name
        self.left = expect

    def read(self, n):
        import urllib3
        try:
            data = self.resp.raw.read(n)
        except (OSError, urllib3.exceptions.HTTPError) as exc:
            raise self.client._bad(self.bucket, self.name, f"the body broke off: {exc}") from None
        self.left -= len(data)
        if not data and n and self.left > 0:
            raise self.client._bad(self.bucket, self.name, f"the body ended {self.left} bytes "
                                   "short of its Content-Length")
        return data

    def skip(self, n):
        while n > 0:
            data = self.read(min(n, _CHUNK))
            if not data:
                return
            n -= len(data)

    def close(self):
        self.resp.close()
