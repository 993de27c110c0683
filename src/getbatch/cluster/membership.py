"""Membership in etcd: a node registers under a lease it keeps alive; every process watches.

Keys (all under `PREFIX`):
    getbatch/cluster          {"uuid", "secret", "created"}: made once, by the first node
    getbatch/nodes/<id>       {"id", "url"} of a live node, attached to its lease

Who holds the lease. Under gunicorn the arbiter (master) process registers the node and keeps
the lease alive from a thread; workers only watch. A SIGKILLed or SIGSTOPped node (its whole
process group, or just the arbiter: the workers exit when the arbiter dies) stops refreshing,
so etcd drops its key within `LEASE_TTL` seconds. After a pause longer than that (SIGSTOP,
etcd down) the lease is gone: the registrar grants a new one and registers again.

The node id is kept in the data dir (`.sys/node-id`), so a restarted node is the same node and
owns the same objects.

Every worker keeps its own `Smap` current from a watch (`PrefixWatcher`): no etcd round trip
per request, and when etcd is unreachable the last known map stays in use.
"""
import json
import logging
import os
import secrets
import threading
import time

from .etcd import EtcdError
from .smap import LEFT_GRACE, NodeInfo, Smap

log = logging.getLogger("getbatch.cluster")

PREFIX = "getbatch/"
CLUSTER_KEY = PREFIX + "cluster"
NODES = PREFIX + "nodes/"
LEASE_TTL = 4          # seconds: a dead node leaves the map within this
RETRY = 1.0            # seconds between attempts while etcd is unreachable


def stable_node_id(data_dir):
    """This node's id: read from `<data_dir>/.sys/node-id`, made (random) on first start."""
    path = os.path.join(data_dir, ".sys", "node-id")
    try:
        with open(path) as f:
            node_id = f.read().strip()
        if node_id:
            return node_id
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(path), exist_ok=True)
    node_id = secrets.token_hex(4)
    tmp = f"{path}.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(node_id + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return node_id


def cluster_identity(etcd):
    """{"uuid", "secret", "created"} of the cluster, made by whichever node gets there first
    (a create-if-absent transaction, so every node reads the same secret)."""
    ident = {"uuid": secrets.token_hex(8), "secret": secrets.token_urlsafe(32),
             "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    created, kv = etcd.create(CLUSTER_KEY, json.dumps(ident))
    if created:
        log.info("created cluster %s in etcd", ident["uuid"])
        return ident
    return json.loads(kv.value)


def lease_fresh(path, ttl=LEASE_TTL):
    """True when the registrar confirmed this node's lease within the last `ttl` seconds
    (the mtime of the file it touches, `path`): only then may the node accept writes."""
    try:
        return time.time() - os.stat(path).st_mtime < ttl
    except FileNotFoundError:
        return False


class Registrar:
    """Registers this node under a lease and keeps it alive from a daemon thread. Every
    confirmation of the lease touches `lease_path`, which the workers read (lease_fresh).

    `catch_up`: with it, each registration (boot, and after the lease was lost) is in two
    steps: the node registers as joining (peers send it the copies it owns, but read nothing
    from it and it takes no writes), `catch_up()` brings what it holds up to its peers'
    newest versions, and only then is the node live. A write acknowledged while it catches up
    reached it (it was a write target); one acknowledged before it registered is what the
    catch-up takes."""

    def __init__(self, etcd, node, ttl=LEASE_TTL, lease_path=None, catch_up=None):
        self.etcd = etcd
        self.node = node
        self.ttl = ttl
        self.lease = 0
        self.live = False
        self.lease_path = lease_path
        self.catch_up = catch_up
        self._joiner = None
        self._stop = threading.Event()
        self._thread = None
        self._forget()

    def _confirmed(self):
        if self.lease_path is not None:
            with open(self.lease_path, "a"):
                pass
            os.utime(self.lease_path)

    def _forget(self):
        if self.lease_path is not None:
            try:
                os.unlink(self.lease_path)
            except FileNotFoundError:
                pass

    def _put(self, joining):
        entry = {"id": self.node.id, "url": self.node.url}
        if joining:
            entry["joining"] = True
        self.etcd.put(NODES + self.node.id, json.dumps(entry), lease=self.lease)

    def _register(self):
        self.live = False
        self.lease = self.etcd.grant(self.ttl)
        self._put(joining=self.catch_up is not None)
        self._confirmed()
        log.info("node %s registered in etcd at %s (lease %x)", self.node.id, self.node.url,
                 self.lease)
        self._join()

    def _join(self):
        """Turn live: at once without `catch_up`, else once it has run, in a thread of its
        own (the lease must be kept alive meanwhile; a catch-up may take minutes)."""
        if self.catch_up is None:
            self.live = True
            return
        if self._joiner is not None and self._joiner.is_alive():
            return
        lease = self.lease

        def run():
            try:
                self.catch_up()
                if self.lease == lease:
                    self._put(joining=False)
                    self.live = True
                    log.info("node %s caught up with its peers: live", self.node.id)
            except Exception as exc:  # the lease loop starts another
                log.warning("node %s could not catch up with its peers yet: %s; retrying",
                            self.node.id, exc)
        self._joiner = threading.Thread(target=run, name="catch-up", daemon=True)
        self._joiner.start()

    def start(self):
        self._thread = threading.Thread(target=self._run, name="etcd-lease", daemon=True)
        self._thread.start()

    def _run(self):
        try:
            self._register()
        except Exception as exc:  # etcd away: retried below
            log.warning("node %s not registered yet: %s; retrying", self.node.id, exc)
        self._keep()

    def _keep(self):
        down = False
        while not self._stop.wait(self.ttl / 4 if not down else RETRY):
            try:
                if not self.lease or self.etcd.keepalive(self.lease) <= 0:
                    if self.lease:
                        log.warning("node %s: lease expired (paused or etcd was away); "
                                    "registering again, joining until caught up",
                                    self.node.id)
                    self.lease = 0
                    self._forget()
                    self._register()
                else:
                    self._confirmed()
                    if not self.live:
                        self._join()   # unless one runs: the last one failed
                if down:
                    log.info("etcd reachable again")
                down = False
            except Exception as exc:  # etcd away: retried
                if not down:
                    log.warning("cannot keep node %s registered: %s", self.node.id, exc)
                down = True

    def stop(self):
        """Leave the cluster now (a graceful stop): revoke the lease, dropping the node key."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._forget()
        if self.lease:
            try:
                self.etcd.revoke(self.lease)
                log.info("node %s left the cluster", self.node.id)
            except EtcdError as exc:
                log.warning("node %s: lease not revoked (%s); it expires in %ds", self.node.id,
                            exc, self.ttl)


class PrefixWatcher:
    """Keeps every key under a prefix current from an etcd watch, in a daemon thread, and
    publishes `build(kvs: {key: KV}, revision)` as `value` after every change.

    When etcd is unreachable the last value stays; the watcher retries and re-reads the whole
    prefix once it is back (so changes missed meanwhile are picked up)."""

    def __init__(self, etcd, prefix, build, initial=None, idle_timeout=30.0):
        self.etcd = etcd
        self.prefix = prefix
        self.build = build
        self.value = initial
        self.revision = 0
        self.idle_timeout = idle_timeout
        self.synced = threading.Event()
        self._kvs = {}
        self._stop = threading.Event()
        self._thread = None

    def sync(self):
        """Read the whole prefix now (raises EtcdUnavailable)."""
        kvs, revision = self.etcd.range(self.prefix)
        self._kvs = {kv.key: kv for kv in kvs}
        self._publish(revision)
        self.synced.set()

    def _publish(self, revision):
        self.revision = revision
        self.value = self.build(dict(self._kvs), revision)

    def start(self):
        self._thread = threading.Thread(target=self._run, name=f"etcd-watch {self.prefix}",
                                        daemon=True)
        self._thread.start()

    def _run(self):
        down = False
        while not self._stop.is_set():
            try:
                if not self.synced.is_set() or down:
                    self.sync()
                    if down:
                        log.info("etcd reachable again; watching %s", self.prefix)
                    down = False
                for revision, events in self.etcd.watch(self.prefix, self.revision + 1,
                                                        self.idle_timeout):
                    for ev in events:
                        if ev.kind == "DELETE":
                            self._kvs.pop(ev.kv.key, None)
                        else:
                            self._kvs[ev.kv.key] = ev.kv
                    self._publish(revision)
                    if self._stop.is_set():
                        return
                # idle: the watch ended quietly; re-read to be sure nothing was missed
                self.synced.clear()
            except EtcdError as exc:
                if not down:
                    log.warning("watching %s: %s; keeping the last known state", self.prefix, exc)
                down = True
                self._stop.wait(RETRY)
            except Exception:  # never let the thread die: the node would go stale silently
                log.exception("watching %s failed; retrying", self.prefix)
                down = True
                self._stop.wait(RETRY)

    def stop(self):
        self._stop.set()


def smap_builder(self_id, clock=time.monotonic):
    """A PrefixWatcher `build` turning node keys into the Smap as seen by `self_id` (nodes
    still catching up apart: see Registrar; nodes gone from the keys lately in `left`)."""
    last, left = {}, {}   # id -> NodeInfo of the last map; id -> (NodeInfo, when it left)

    def build(kvs, revision):
        nodes, joining = [], []
        for kv in kvs.values():
            try:
                d = json.loads(kv.value)
                (joining if d.get("joining") else nodes).append(NodeInfo(d["id"], d["url"]))
            except (ValueError, KeyError, TypeError, AttributeError):
                log.warning("ignoring malformed node entry %s=%r in etcd", kv.key, kv.value)
        now = clock()
        current = {n.id: n for n in nodes + joining}
        for nid, node in last.items():
            if nid not in current:
                left[nid] = (node, now)
        for nid, (_, when) in list(left.items()):
            if nid in current or now - when >= LEFT_GRACE:
                del left[nid]
        last.clear()
        last.update(current)
        return Smap(revision, nodes, self_id, joining, left.values())
    return build

