"""Cluster-wide bucket metadata in etcd: one key per bucket, its revision the bucket's version.

    getbatch/buckets/<provider>/<name>   {"created": "...", "mirror": {"enabled", "copies"}}

Every worker keeps the table cached from a watch. Reads use the cache; a name the cache does
not know is looked up in etcd once more before it is called missing, so a bucket created a
moment ago through another node is found at once. Changes go to etcd (create-if-absent,
compare-and-swap on the revision); when etcd is unreachable they fail with `Unavailable`
(503) while reads go on with the cached table.
"""
import json
import time

from ..store.errors import BucketExists, BucketNotFound, StoreError, Unavailable
from .etcd import EtcdUnavailable
from .membership import PREFIX, PrefixWatcher

BUCKETS = PREFIX + "buckets/"
MAX_COPIES = 3


class BucketMeta:
    """`revision`: the key's last change (the bucket's version); `create_revision`: when it
    was made (which incarnation of the name this is)."""

    __slots__ = ("name", "provider", "props", "revision", "create_revision")

    def __init__(self, name, provider, props, revision, create_revision=0):
        self.name = name
        self.provider = provider
        self.props = props
        self.revision = revision
        self.create_revision = create_revision

    @property
    def copies(self):
        """How many nodes hold each object (the mirror property; 1 unless enabled)."""
        m = self.props.get("mirror") or {}
        return int(m.get("copies", 1)) if m.get("enabled") else 1


def _key(provider, name):
    return f"{BUCKETS}{provider}/{name}"


def read_table(etcd, provider="ais"):
    """{name: BucketMeta} of the provider's buckets, read from etcd now (EtcdUnavailable)."""
    kvs, revision = etcd.range(f"{BUCKETS}{provider}/")
    return {name: meta for (_, name), meta in _build({kv.key: kv for kv in kvs}, revision).items()}


def _build(kvs, revision):
    table = {}
    for kv in kvs.values():
        provider, _, name = kv.key[len(BUCKETS):].partition("/")
        try:
            props = json.loads(kv.value)
        except ValueError:
            continue
        table[(provider, name)] = BucketMeta(name, provider, props, kv.mod_revision,
                                             kv.create_revision)
    return table


def check_mirror(value):
    """The mirror property as stored ({"enabled": bool, "copies": 1..3}); StoreError (400)
    naming what is wrong."""
    if not isinstance(value, dict) or set(value) - {"enabled", "copies"}:
        raise StoreError('invalid mirror property: expecting {"enabled": true|false, '
                         '"copies": 1..3}')
    enabled = value.get("enabled", True)
    copies = value.get("copies", 2 if enabled else 1)
    if not isinstance(enabled, bool):
        raise StoreError(f"invalid mirror.enabled {enabled!r}: expecting true or false")
    if type(copies) is not int or not 1 <= copies <= MAX_COPIES:
        raise StoreError(f"invalid mirror.copies {copies!r}: expecting 1 to {MAX_COPIES}")
    return {"enabled": enabled, "copies": copies}


class BucketTable:
    """`on_gone(name, create_revision)`: called (from the watch thread) for each bucket of
    the provider that the watch sees destroyed, or destroyed and made again."""

    def __init__(self, etcd, provider="ais", on_gone=None):
        self.etcd = etcd
        self.provider = provider
        self.on_gone = on_gone
        self._watcher = None
        self._watcher = PrefixWatcher(etcd, BUCKETS, self._rebuild, initial={})

    def _rebuild(self, kvs, revision):
        table = _build(kvs, revision)
        if self.on_gone is not None and self._watcher is not None:
            for (provider, name), meta in self._watcher.value.items():
                now = table.get((provider, name))
                if provider == self.provider and (
                        now is None or now.create_revision != meta.create_revision):
                    self.on_gone(name, meta.create_revision)
        return table

    def start(self):
        try:
            self._watcher.sync()
        except EtcdUnavailable:
            pass  # the watcher keeps trying; until then the table is empty
        self._watcher.start()

    def get(self, name):
        """The BucketMeta, or None. A cache miss is checked in etcd (when reachable)."""
        try:
            return self._lookup(name)
        except EtcdUnavailable:
            return None

    def _lookup(self, name):
        """The BucketMeta from the table, else from etcd; None when etcd has none either.
        EtcdUnavailable when the table misses it and etcd cannot say."""
        meta = self._watcher.value.get((self.provider, name))
        if meta is None:
            kv = self.etcd.get(_key(self.provider, name))
            if kv is not None:
                meta = BucketMeta(name, self.provider, json.loads(kv.value), kv.mod_revision,
                                  kv.create_revision)
        return meta

    def require(self, name):
        """The BucketMeta; BucketNotFound when etcd has no such bucket, Unavailable (503)
        when this node's table misses it and etcd cannot be asked (a node that started or
        joined while etcd was away): an existing bucket is never answered with a 404."""
        try:
            meta = self._lookup(name)
        except EtcdUnavailable:
            raise _unknown(self.provider, name) from None
        if meta is None:
            raise BucketNotFound(name, self.provider)
        return meta

    def current(self, name):
        """The BucketMeta as etcd has it now (the cache when etcd is unreachable): writes use
        it, so a PUT right after a `mirror` change through another node or worker stores the
        new number of copies instead of the cache's, which a watch updates a moment later."""
        try:
            kv = self.etcd.get(_key(self.provider, name))
        except EtcdUnavailable:
            return self.require(name)
        if kv is None:
            raise BucketNotFound(name, self.provider)
        return BucketMeta(name, self.provider, json.loads(kv.value), kv.mod_revision,
                          kv.create_revision)

    def names(self):
        return sorted(n for p, n in self._watcher.value if p == self.provider)

    def create(self, name):
        props = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 "mirror": {"enabled": False, "copies": 1}}
        created, _ = self._change(self.etcd.create, _key(self.provider, name), json.dumps(props))
        if not created:
            raise BucketExists(name, self.provider)

    def destroy(self, name):
        """Remove the bucket from the cluster's table (its objects are the caller's to remove)."""
        key = _key(self.provider, name)
        while True:
            kv = self._change(self.etcd.get, key)
            if kv is None:
                raise BucketNotFound(name, self.provider)
            if self._change(self.etcd.cas_delete, key, kv.mod_revision):
                return

    def set_props(self, name, changes):
        """Merge `changes` (already checked) into the bucket's properties."""
        key = _key(self.provider, name)
        while True:
            kv = self._change(self.etcd.get, key)
            if kv is None:
                raise BucketNotFound(name, self.provider)
            props = dict(json.loads(kv.value), **changes)
            if self._change(self.etcd.cas, key, json.dumps(props), kv.mod_revision):
                return

    def _change(self, fn, *args):
        try:
            return fn(*args)
        except EtcdUnavailable as exc:
            raise Unavailable(f"cannot change bucket metadata now: {exc}; reads go on") from None


def _unknown(provider, name):
    return Unavailable(f"bucket {provider}://{name}: bucket metadata unavailable (not in this "
                       "node's table yet, and etcd cannot be reached); try again")
