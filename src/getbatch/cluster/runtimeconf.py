"""Runtime overrides of a cluster: one etcd key every worker of every node watches.

    getbatch/config     {"values": {name: text}, "set": {name: "<time> by <client>"}}

The same document as a single node's `.sys/runtime-config.json` (runtime.py); a change made
through any node reaches all of them within a watch round trip. Changes are compare-and-swap
on the key's revision; while etcd is unreachable they fail (503) and the last known overrides
stay in force.
"""
import json

from ..store.errors import Unavailable
from .etcd import EtcdUnavailable
from .membership import PREFIX, PrefixWatcher

CONFIG_KEY = PREFIX + "config"


def _build(kvs, revision):
    kv = kvs.get(CONFIG_KEY)
    if kv is None:
        return {}
    try:
        return json.loads(kv.value)
    except ValueError:
        return {}


class EtcdStore:
    def __init__(self, etcd):
        self.etcd = etcd
        # the exact key: a prefix watch of "getbatch/config" would also see longer names
        self._watcher = PrefixWatcher(etcd, CONFIG_KEY, _build, initial={})

    def start(self):
        try:
            self._watcher.sync()
        except EtcdUnavailable:
            pass  # the watcher keeps trying; until then no overrides
        self._watcher.start()
        return self

    def version(self):
        return self._watcher.revision

    def read(self):
        return self._watcher.value or {}

    def update(self, change):
        try:
            while True:
                kv = self.etcd.get(CONFIG_KEY)
                if kv is None:
                    doc = change({})
                    created, _ = self.etcd.create(CONFIG_KEY, json.dumps(doc, sort_keys=True))
                    if created:
                        return doc
                    continue
                doc = change(json.loads(kv.value))
                if self.etcd.cas(CONFIG_KEY, json.dumps(doc, sort_keys=True), kv.mod_revision):
                    return doc
        except EtcdUnavailable as exc:
            raise Unavailable(f"cannot change the cluster's configuration now: {exc}; the "
                              "settings in force stay") from None
