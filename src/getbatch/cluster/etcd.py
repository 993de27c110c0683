"""A small etcd v3 client over its JSON gateway (HTTP or HTTPS, `requests`).

What a node needs and no more: leases (grant, keepalive, revoke), put (optionally under a
lease), get and prefix range, delete, compare-and-swap transactions, and a streaming watch.
Keys and values are `str` here and base64 on the wire, as the gateway wants.

Every call has a timeout. A call tries the endpoints in turn (starting with the last one that
answered) and raises `EtcdUnavailable`, naming the endpoints and the last reason, when none
answers; an answer that is an etcd error (bad request, lease not found) is `EtcdError`.
`tls` (a getbatch.tls.ClientTLS): the CA https:// endpoints are checked against and the client
certificate shown to them (settings etcd_ca, etcd_cert, etcd_key).
"""
import base64
import json
import logging
import threading

import requests

log = logging.getLogger("getbatch.etcd")

TIMEOUT = (2.0, 3.0)  # (connect, read) seconds of one call


class EtcdError(Exception):
    """etcd answered, with an error."""


class EtcdUnavailable(EtcdError):
    """No etcd endpoint answered."""

    def __init__(self, endpoints, reason):
        self.endpoints = endpoints
        super().__init__(f"etcd at {', '.join(endpoints)} is unreachable ({reason})")


def _b64(text):
    return base64.b64encode(text.encode()).decode()


def _unb64(text):
    return base64.b64decode(text or "").decode()


def prefix_end(prefix):
    """The range end that makes [prefix, end) every key starting with `prefix`."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1  # prefixes here end in '/', never in 0xff
    return bytes(raw).decode()


class KV:
    """One key-value as etcd stores it."""

    __slots__ = ("key", "value", "create_revision", "mod_revision", "lease")

    def __init__(self, d):
        self.key = _unb64(d.get("key"))
        self.value = _unb64(d.get("value"))
        self.create_revision = int(d.get("create_revision", 0))
        self.mod_revision = int(d.get("mod_revision", 0))
        self.lease = int(d.get("lease", 0))

    def __repr__(self):
        return f"KV({self.key!r}, {self.value!r}, mod={self.mod_revision})"


class Event:
    """A watch event: `kind` is "PUT" or "DELETE"; `kv.value` is "" for a delete."""

    __slots__ = ("kind", "kv")

    def __init__(self, d):
        self.kind = d.get("type", "PUT")
        self.kv = KV(d.get("kv", {}))


class Etcd:
    def __init__(self, endpoints, timeout=TIMEOUT, tls=None):
        if isinstance(endpoints, str):
            endpoints = [endpoints]
        self.endpoints = [e.rstrip("/") for e in endpoints]
        if not self.endpoints:
            raise ValueError("no etcd endpoint")
        self.timeout = timeout
        self.tls = tls
        self._session = self._new_session()
        self._first = 0
        self._lock = threading.Lock()

    def _new_session(self):
        s = requests.Session()
        if self.tls is not None:
            s.mount("https://", self.tls.adapter())
        return s

    def _order(self):
        n = len(self.endpoints)
        return [self.endpoints[(self._first + i) % n] for i in range(n)]

    def _post(self, path, body, timeout=None, stream=False, session=None):
        reason = "no endpoint"
        for ep in self._order():
            try:
                r = (session or self._session).post(ep + path, json=body, stream=stream,
                                                    timeout=timeout or self.timeout)
            except requests.RequestException as exc:
                reason = f"{ep}: {type(exc).__name__}"
                continue
            self._first = self.endpoints.index(ep)
            if stream:
                if r.status_code != 200:
                    raise EtcdError(f"etcd {ep}{path}: {r.status_code} {r.text[:200]}")
                return r
            try:
                doc = r.json()
            except ValueError:
                raise EtcdError(f"etcd {ep}{path}: {r.status_code}, not JSON") from None
            if r.status_code != 200 or "error" in doc and "header" not in doc:
                raise EtcdError(f"etcd {ep}{path}: {doc.get('message') or doc.get('error')}")
            return doc
        raise EtcdUnavailable(self.endpoints, reason)

    # ---- leases
    def grant(self, ttl):
        """A new lease of `ttl` seconds; its id."""
        return int(self._post("/v3/lease/grant", {"TTL": ttl})["ID"])

    def keepalive(self, lease):
        """Refresh the lease once; its remaining TTL, 0 when it has expired or is unknown."""
        doc = self._post("/v3/lease/keepalive", {"ID": lease})
        return int(doc.get("result", {}).get("TTL", 0))

    def revoke(self, lease):
        """Drop the lease and every key attached to it (a missing lease is no error)."""
        try:
            self._post("/v3/lease/revoke", {"ID": lease})
        except EtcdUnavailable:
            raise
        except EtcdError:
            pass

    # ---- keys
    def put(self, key, value, lease=0):
        """Store `value` at `key` (attached to `lease` when given); the new revision."""
        body = {"key": _b64(key), "value": _b64(value)}
        if lease:
            body["lease"] = lease
        return int(self._post("/v3/kv/put", body)["header"]["revision"])

    def get(self, key):
        """The KV at `key`, or None."""
        kvs = self._post("/v3/kv/range", {"key": _b64(key)}).get("kvs", [])
        return KV(kvs[0]) if kvs else None

    def range(self, prefix):
        """([KV of every key under `prefix`, by key], the store's revision)."""
        doc = self._post("/v3/kv/range", {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix))})
        return [KV(d) for d in doc.get("kvs", [])], int(doc["header"]["revision"])

    def delete(self, key, prefix=False):
        """Delete `key` (or every key under it); how many were deleted."""
        body = {"key": _b64(key)}
        if prefix:
            body["range_end"] = _b64(prefix_end(key))
        return int(self._post("/v3/kv/deleterange", body).get("deleted", 0))

    def txn(self, compare, success, failure=()):
        """A raw transaction (gateway JSON, keys already base64); (succeeded, responses)."""
        doc = self._post("/v3/kv/txn", {"compare": list(compare), "success": list(success),
                                        "failure": list(failure)})
        return bool(doc.get("succeeded", False)), doc.get("responses", [])

    def create(self, key, value):
        """Store `value` at `key` only if the key does not exist. (True, None) when created,
        else (False, the existing KV)."""
        ok, responses = self.txn(
            [{"key": _b64(key), "target": "CREATE", "create_revision": "0"}],
            [{"requestPut": {"key": _b64(key), "value": _b64(value)}}],
            [{"requestRange": {"key": _b64(key)}}])
        if ok:
            return True, None
        kvs = responses[0].get("response_range", {}).get("kvs", []) if responses else []
        return False, (KV(kvs[0]) if kvs else None)

    def cas(self, key, value, mod_revision):
        """Store `value` only if `key` was last changed at `mod_revision` (0: does not exist);
        True when stored."""
        cmp = ({"key": _b64(key), "target": "CREATE", "create_revision": "0"} if not mod_revision
               else {"key": _b64(key), "target": "MOD", "mod_revision": str(mod_revision)})
        ok, _ = self.txn([cmp], [{"requestPut": {"key": _b64(key), "value": _b64(value)}}])
        return ok

    def cas_delete(self, key, mod_revision):
        """Delete `key` only if it was last changed at `mod_revision`; True when deleted."""
        ok, _ = self.txn([{"key": _b64(key), "target": "MOD", "mod_revision": str(mod_revision)}],
                         [{"requestDeleteRange": {"key": _b64(key)}}])
        return ok

    # ---- watch
    def watch(self, prefix, start_revision, idle_timeout=30.0):
        """Events under `prefix` from `start_revision` on, as lists (one per etcd revision
        batch) of Event, each list paired with its revision: yields (revision, [Event]).

        Ends (returns) when nothing arrived for `idle_timeout` seconds, so that a caller
        re-syncs and notices an etcd that stopped answering; raises EtcdUnavailable when the
        stream cannot be opened or breaks."""
        body = {"create_request": {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix)),
                                   "start_revision": str(start_revision)}}
        session = self._new_session()  # a stream holds its connection for its whole life
        try:
            r = self._post("/v3/watch", body, timeout=(self.timeout[0], idle_timeout),
                           stream=True, session=session)
            try:
                for line in r.iter_lines():
                    if not line:
                        continue
                    res = json.loads(line).get("result", {})
                    if res.get("canceled") or res.get("compact_revision"):
                        raise EtcdError(f"watch of {prefix} canceled: "
                                        f"{res.get('cancel_reason') or 'compacted'}")
                    events = res.get("events")
                    if events:
                        yield int(res["header"]["revision"]), [Event(e) for e in events]
            except requests.exceptions.ConnectionError as exc:
                # a read timeout on the stream arrives as ConnectionError(ReadTimeoutError)
                if "timed out" in str(exc).lower():
                    return
                raise EtcdUnavailable(self.endpoints, f"watch broke: {type(exc).__name__}")
            except requests.RequestException as exc:
                raise EtcdUnavailable(self.endpoints, f"watch broke: {type(exc).__name__}")
            finally:
                r.close()
        finally:
            session.close()

    def close(self):
        self._session.close()
