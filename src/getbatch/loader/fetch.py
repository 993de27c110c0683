"""Fetch one batch, whole, whatever breaks on the way.

A batch is asked for as a streaming TAR (`strm`), parsed as it arrives, and each entry is
checked against its `GETBATCH.xxhash64` PAX record (`verify`). When the stream breaks (a
node killed mid-batch, a cut connection, a 5xx, a 429, a stream that ends before the archive
end, a checksum that does not match) the fetcher asks again, the next node of `urls` first,
for the rest of the batch only: the same step from the first missing entry (`first`), or the
names not received yet. Nothing is fetched twice and no entry is lost or repeated.
"""
import time

import requests
import xxhash

from .tarstream import CKSUM_KEY, TarFormatError, TarStream

RETRY_STATUS = {429, 500, 502, 503, 504}
_CHUNK = 1 << 20


class BatchFailed(Exception):
    """The batch could not be had: a 4xx, or every attempt failed."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


class IntegrityError(BatchFailed):
    pass


class EmptyStep(Exception):
    """The step holds nothing for this rank (416): past the end, or an empty last step."""


class _Broken(Exception):
    pass


class Fetcher:
    def __init__(self, urls, attempts=6, timeout=(5, 120), verify=True, backoff=0.25,
                 session=None):
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        self.attempts = attempts
        self.timeout = timeout
        self.verify = verify
        self.backoff = backoff
        self.session = session or requests.Session()
        self._at = 0          # index of the node asked first
        self.resumes = 0      # requests that went on with the rest of a batch

    def step(self, plan, epoch, rank, step, world_size=None, offset=0, mime=".tar",
             ahead=None):
        """[(name, bytes)] of rank `rank`'s step `step` of epoch `epoch`; EmptyStep on 416.
        `ahead`: steps the node warms after this one (None: its default)."""
        body = {"plan": plan, "epoch": epoch, "rank": rank, "step": step, "mime": mime}
        if ahead is not None:
            body["ahead"] = ahead
        if world_size is not None:
            body["world_size"] = world_size
        if offset:
            body["offset"] = offset
        return self._fetch(lambda got: dict(body, first=len(got)) if got else body)

    def names(self, entries, bucket=None, provider="ais"):
        """[(name, bytes)] of a batch of `entries` (object names, or MossIn-like dicts)."""
        ins = [e if isinstance(e, dict) else {"objname": e} for e in entries]
        if bucket is not None:
            ins = [dict(e, bucket=e.get("bucket", bucket), provider=e.get("provider", provider))
                   for e in ins]
        return self._fetch(lambda got: {"in": ins[len(got):]})

    def _fetch(self, body_for):
        got, errors = [], []
        for attempt in range(self.attempts):
            if attempt:
                self.resumes += 1
                self._at = (self._at + 1) % len(self.urls)
                time.sleep(self.backoff * attempt)
            url = self.urls[self._at]
            body = dict(body_for(got), strm=True)
            if self.verify:
                body["cksum"] = True
            try:
                if self._read(url, body, got):
                    return got
            except _Broken as exc:
                errors.append(f"{url}: {exc}")
            except (requests.ConnectionError, requests.Timeout,
                    requests.exceptions.ChunkedEncodingError) as exc:
                errors.append(f"{url}: {type(exc).__name__}")
        raise BatchFailed(f"batch incomplete after {self.attempts} attempts ({len(got)} entries "
                          f"received): {'; '.join(errors[-3:])}")

    def _read(self, url, body, got):
        """Append what arrives to `got`; True when the archive ended properly."""
        with self.session.get(url + "/v1/ml/moss", json=body, stream=True,
                              timeout=self.timeout) as r:
            if r.status_code == 416 and not got:
                raise EmptyStep(r.text.strip())
            if r.status_code in RETRY_STATUS:
                raise _Broken(f"{r.status_code} {r.text.strip()[:200]}")
            if r.status_code != 200:
                raise BatchFailed(f"{url} answered {r.status_code}: {r.text.strip()[:300]}",
                                  r.status_code)
            ts = TarStream()
            try:
                for chunk in r.iter_content(_CHUNK):
                    for name, data, pax in ts.feed(chunk):
                        self._check(name, data, pax)
                        got.append((name, data))
                    if ts.ended:
                        return True
            except TarFormatError as exc:
                raise _Broken(str(exc)) from None
            raise _Broken(f"the stream ended after {len(got)} entries, before the archive end")

    def _check(self, name, data, pax):
        if not self.verify:
            return
        want = pax.get(CKSUM_KEY)
        if want is None:
            raise IntegrityError(f"{name}: the server sent no checksum (a server without "
                                 "`cksum` support? pass verify=False)")
        if xxhash.xxh64_hexdigest(data) != want:
            raise _Broken(f"{name}: checksum mismatch (xxhash64 {want} expected)")
