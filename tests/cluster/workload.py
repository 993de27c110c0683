"""A workload against a real cluster, recorded as a history for checker.py.

- `Versions`: every value written is a version of one name, made from (name, version id,
  size) in 64 KiB blocks that each carry their version in a header, and known by its digest:
  a read's bytes are one whole version, or the blocks tell which versions they mix.
- `History`: the ops, with the client's clock; thread-safe.
- `Client`: PUT, DELETE, GET through the real aistore SDK and GetBatch through `requests`
  (streamed TAR, parsed as it arrives), each recorded with its interval and outcome.
- `Workload`: threads that drive a seeded mix of overwrites, deletes, racing PUTs of one name
  through two nodes, GETs and GetBatches with large items against the nodes that are up.
"""
import hashlib
import random
import tarfile
import threading
import time

import requests
import urllib3
from aistore.sdk.errors import AISError

from tests.support.nodes import make_client

from .checker import Op

BLOCK = 64 << 10
_HEAD = 48   # bytes of each block's header: "name|vid|block" padded with spaces


class Versions:
    """Versions by digest; the bytes of a version are a function of (name, vid, size)."""

    def __init__(self):
        self.by_digest = {}
        self._lock = threading.Lock()

    @staticmethod
    def make(name, vid, size):
        filler = random.Random(f"{name}|{vid}").randbytes(BLOCK)
        out = bytearray()
        for i in range(0, max(size, 1), BLOCK):
            head = f"{name}|{vid}|{i // BLOCK}|".encode()[:_HEAD].ljust(_HEAD)
            out += (head + filler[_HEAD:])[:min(BLOCK, size - i)]
        return bytes(out[:size])

    def new(self, name, vid, size):
        data = self.make(name, vid, size)
        with self._lock:
            self.by_digest[hashlib.sha256(data).digest()] = (name, vid)
        return data

    def identify(self, name, data):
        """(vid, "") when `data` is a whole version of `name`, else (None, what it is)."""
        got = self.by_digest.get(hashlib.sha256(data).digest())
        if got is not None and got[0] == name:
            return got[1], ""
        runs = []
        for i in range(0, len(data), BLOCK):
            head = data[i:i + _HEAD].split(b"|")
            label = (head[1].decode("utf-8", "replace") if len(head) > 2 and
                     head[0] == name.encode() else "foreign bytes")
            if runs and runs[-1][0] == label:
                runs[-1][1] += 1
            else:
                runs.append([label, 1])
        return None, (f"{len(data)} bytes, " +
                      " then ".join(f"{n} block(s) of {label}" for label, n in runs))


class History:
    def __init__(self):
        self.ops = []
        self.t0 = time.monotonic()
        self._lock = threading.Lock()

    def now(self):
        return time.monotonic() - self.t0

    def add(self, op):
        with self._lock:
            self.ops.append(op)

    def counts(self):
        with self._lock:
            ops = list(self.ops)
        out = {}
        for op in ops:
            k = op.kind + ("" if op.kind == "read" or op.ok else
                           " (refused)" if op.ok is False else " (unknown)")
            out[k] = out.get(k, 0) + 1
        return out


def _refusal(exc):
    """What a valid write that raised `exc` was refused with (a 4xx: a violation, see
    checker.py), else ""."""
    status = getattr(exc, "status_code", None)
    if status is None and isinstance(exc, requests.HTTPError) and exc.response is not None:
        status = exc.response.status_code
    return f"{status}: {str(exc)[:200]}" if status is not None and 400 <= status < 500 else ""


def _status(exc):
    return getattr(exc, "status_code", None)


class Client:
    """Recorded operations on one bucket through any node."""

    def __init__(self, bucket, versions, history, timeout=(3, 20)):
        self.bucket = bucket
        self.versions = versions
        self.history = history
        self.timeout = timeout
        self.errors = {}
        self._clients = {}
        self._lock = threading.Lock()

    def _obj(self, url, name):
        with self._lock:
            c = self._clients.get(url)
            if c is None:
                c = self._clients[url] = make_client(url, timeout=self.timeout)
        return c.bucket(self.bucket).object(name)

    def _error(self, what, exc):
        key = f"{what}: {type(exc).__name__} {_status(exc) or ''}".strip()
        with self._lock:
            self.errors[key] = self.errors.get(key, 0) + 1

    def put(self, url, name, vid, size):
        data = self.versions.new(name, vid, size)
        start = self.history.now()
        ok, refused = True, ""
        try:
            self._obj(url, name).get_writer().put_content(data)
        except (AISError, requests.RequestException) as exc:
            self._error("put", exc)
            ok, refused = None, _refusal(exc)   # unknown: it may have taken effect
        self.history.add(Op("put", name, start, self.history.now(), ok, vid, url, refused))
        return ok

    def delete(self, url, name):
        start = self.history.now()
        ok, refused = True, ""
        try:
            self._obj(url, name).delete()
        except (AISError, requests.RequestException) as exc:
            if _status(exc) == 404:  # nothing to delete: a read of ABSENT, maybe a partial delete
                end = self.history.now()
                self.history.add(Op("read", name, start, end, via=f"DELETE {url}"))
                self.history.add(Op("delete", name, start, end, None, via=url))
                return None
            self._error("delete", exc)
            ok, refused = None, _refusal(exc)
        self.history.add(Op("delete", name, start, self.history.now(), ok, via=url,
                            bad=refused))
        return ok

    def get(self, url, name):
        start = self.history.now()
        try:
            data = self._obj(url, name).get_reader().read_all()
        except (AISError, requests.RequestException) as exc:
            if _status(exc) != 404:
                self._error("get", exc)
                return
            data = None
        self._record_read(name, data, start, self.history.now(), f"GET {url}")

    def _record_read(self, name, data, start, end, via):
        if data is None:
            self.history.add(Op("read", name, start, end, via=via))
            return
        vid, bad = self.versions.identify(name, data)
        self.history.add(Op("read", name, start, end, vid=vid, via=via, bad=bad))

    def batch(self, url, names, midway=None):
        """One streamed GetBatch (coer, names only); its items are recorded only when the
        response is complete (a cut one is a detectable failure, which the contract allows).
        Placeholders are not reads: they declare an item unavailable. `midway`: (n, fn), fn()
        called once the first n bytes of the body are read (a fault in mid-stream). Whether
        it was complete."""
        start = self.history.now()
        items = []
        try:
            with requests.get(f"{url}/v1/ml/moss/{self.bucket}", stream=True,
                              timeout=self.timeout,
                              json={"in": [{"objname": n} for n in names], "coer": True,
                                    "strm": True, "onob": True}) as resp:
                if resp.status_code != 200:
                    self._error("batch", requests.HTTPError(response=resp))
                    return False
                body = resp.raw if midway is None else _Midway(resp.raw, *midway)
                with tarfile.open(fileobj=body, mode="r|") as tf:
                    for m in tf:
                        items.append((m.name, tf.extractfile(m).read() if m.isfile() else b""))
        except (requests.RequestException, urllib3.exceptions.HTTPError, tarfile.TarError,
                OSError) as exc:
            self._error("batch", exc)
            return False
        end = self.history.now()
        if len(items) != len(names):
            self._error("batch", ValueError(f"{len(items)} items for {len(names)} entries"))
            return False
        for name, (member, data) in zip(names, items):
            if member.startswith("__404__/"):
                continue
            self._record_read(name, data, start, end, f"GetBatch {url}")
        return True


class _Midway:
    """A body read through, calling `fn` once when `n` bytes have been read."""

    def __init__(self, raw, n, fn):
        self.raw, self.left, self.fn = raw, n, fn

    def read(self, size=-1):
        if self.left > 0:
            size = self.left if size < 0 else min(size, self.left)
        data = self.raw.read(size)
        if self.left > 0:
            self.left -= len(data)
            if self.left <= 0 or not data:
                self.left = 0
                self.fn()
        return data


class Workload:
    """Seeded mix of operations on `names` (the first `large` of them several MiB), from
    `threads` threads, against `urls()` (the nodes that are up) until stopped."""

    MIX = (("put", 30), ("get", 25), ("batch", 15), ("delete", 10), ("race", 10), ("idle", 10))

    def __init__(self, client, urls, names, seed, large=2, large_size=(3 << 20, 6 << 20),
                 small_size=(1 << 10, 96 << 10), threads=3):
        self.client = client
        self.urls = urls
        self.names = names
        self.large = set(names[:large])
        self.large_size, self.small_size = large_size, small_size
        self.seed = seed
        self.threads = threads
        self._stop = threading.Event()
        self._vids = 0
        self._lock = threading.Lock()
        self._workers = []

    def _vid(self, name):
        with self._lock:
            self._vids += 1
            return f"v{self._vids}"

    def _size(self, rng, name):
        lo, hi = self.large_size if name in self.large else self.small_size
        return rng.randrange(lo, hi)

    def step(self, rng):
        """One operation chosen by `rng`."""
        urls = self.urls()
        if not urls:
            time.sleep(0.1)
            return
        kind = rng.choices([k for k, _ in self.MIX], [w for _, w in self.MIX])[0]
        name = rng.choice(self.names)
        url = rng.choice(urls)
        if kind == "put":
            self.client.put(url, name, self._vid(name), self._size(rng, name))
        elif kind == "get":
            self.client.get(url, name)
        elif kind == "delete":
            self.client.delete(url, name)
        elif kind == "batch":
            picked = rng.sample(self.names, min(len(self.names), rng.randrange(2, 6)))
            if not self.large & set(picked):
                picked[0] = rng.choice(sorted(self.large))
            self.client.batch(url, picked)
        elif kind == "race":
            other = rng.choice(urls)
            sizes = [self._size(rng, name) for _ in range(2)]
            racers = [threading.Thread(target=self.client.put,
                                       args=(u, name, self._vid(name), sz))
                      for u, sz in zip((url, other), sizes)]
            for t in racers:
                t.start()
            for t in racers:
                t.join()
        else:
            time.sleep(rng.uniform(0.05, 0.3))

    def _run(self, i):
        rng = random.Random(f"{self.seed}/{i}")
        while not self._stop.is_set():
            try:
                self.step(rng)
            except Exception as exc:  # counted, and the thread goes on: a run is not cut short
                self.client._error("unexpected", exc)

    def start(self):
        self._workers = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(self.threads)]
        for t in self._workers:
            t.start()

    def stop(self):
        self._stop.set()
        for t in self._workers:
            t.join(timeout=120)
