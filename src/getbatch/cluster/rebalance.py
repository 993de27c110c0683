"""Rebalance: anti-entropy. Every node brings the owners of what it holds up to date and moves
the objects it holds but does not own to their current owners.

After a node joins or leaves, HRW names new owners for some objects; reads still find them
(they try the ranked nodes in turn), but each such read costs extra hops and a bucket's
`copies` may no longer be on the top nodes; after faults, some copies may be older than
others. A rebalance walks this node's local objects and, for each one, compares its stamp
with the current owners' (store/stamps.py):
- an owner has a newer version, or a newer tombstone: this node takes it (an owner) or
  drops its stale copy (not an owner); never the other way round;
- this copy is the newest: it is copied, stamp and all, to the owners that miss it or hold
  an older one, then dropped here if this node is not an owner and every owner has it.
It also walks this node's tombstones: owners that still hold an older version get the
delete, and tombstones older than TOMB_TTL are collected.

Safe to kill and rerun: a copy is an atomic, stamped PUT on the owner (newest stamp wins, so
it never replaces a newer version), and the local copy is dropped only if it is still the
version every owner was seen to hold; a rerun finds nothing left to move.
Throttled: at most `rate` objects are checked per second. One run per node at a time (a lock
file shared by the worker processes); progress is kept in a JSON file of the data dir so that
any worker of the node can report it. `stop` leaves a marker file any worker may write; the
run sees it within STOP_CHECK_EVERY and ends "stopped" (a rerun goes on where it was).
"""
import fcntl
import json
import logging
import os
import threading
import time

from ..store.errors import ObjectNotFound, StoreError
from ..store.stamps import wall_ms
from ..store.tombs import TOMB_TTL
from .smap import placement_key
from .store import AWAY, newest_state

log = logging.getLogger("getbatch.rebalance")

DEFAULT_RATE = 500  # objects checked per second
STOP_CHECK_EVERY = 0.5  # seconds between looks for a stop request (and progress writes)


class _Stopped(Exception):
    pass


class Rebalance:
    def __init__(self, cluster, data_dir):
        self.cluster = cluster
        sysdir = os.path.join(data_dir, ".sys")
        self.status_path = os.path.join(sysdir, "rebalance.json")
        self.stop_path = os.path.join(sysdir, "rebalance.stop")
        self.lock_path = os.path.join(sysdir, "locks", "rebalance")

    def status(self):
        try:
            with open(self.status_path) as f:
                st = json.load(f)
        except (FileNotFoundError, ValueError):
            return {"node": self.cluster.node.id, "state": "never run"}
        if st.get("state") == "running" and not self._locked():
            st["state"] = "interrupted"  # the process running it died: rerun to finish
        return st

    def _locked(self):
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing drops a lock taken here
        return False

    def start(self, rate=DEFAULT_RATE):
        """Start a run in a thread of this process; False when one runs already on the node."""
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        try:
            os.unlink(self.stop_path)   # a stop asked of an earlier run
        except FileNotFoundError:
            pass
        threading.Thread(target=self._run, args=(fd, rate), name="rebalance", daemon=True).start()
        return True

    def stop(self):
        """Ask the node's running rebalance to stop; False when none runs."""
        if not self._locked():
            return False
        open(self.stop_path, "w").close()
        return True

    def _save(self, st):
        tmp = f"{self.status_path}.{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(st, f)
        os.replace(tmp, self.status_path)

    def _run(self, lock_fd, rate):
        st = {"node": self.cluster.node.id, "state": "running", "started": time.time(),
              "checked": 0, "moved": 0, "copied": 0, "repaired": 0, "tombs_sent": 0,
              "tombs_collected": 0, "errors": 0, "smap_version": 0}
        try:
            self._save(st)
            self.run(st, rate)
            st["state"] = "done"
        except _Stopped:
            st["state"] = "stopped"
        except Exception as exc:
            log.exception("rebalance failed")
            st.update(state="failed", error=str(exc))
        finally:
            st["finished"] = time.time()
            self._save(st)
            os.close(lock_fd)
        log.info("rebalance %s: %d objects checked, %d moved away, %d copies made, %d stale "
                 "copies replaced here, %d deletes sent, %d tombstones collected, %d errors",
                 st["state"], st["checked"], st["moved"], st["copied"], st["repaired"],
                 st["tombs_sent"], st["tombs_collected"], st["errors"])

    def run(self, st, rate):
        """Walk every local object once (updating `st`); the caller holds the node's lock."""
        store = self.cluster.store
        local = store.share.local
        smap = self.cluster.smap
        st["smap_version"] = smap.version
        interval = 1.0 / rate if rate > 0 else 0.0
        last_save = time.monotonic()
        for bucket in local.list_buckets():
            meta = store.buckets.get(bucket)
            if meta is None:
                continue  # destroyed meanwhile
            token = ""
            while True:
                entries, token = local.list_objects(bucket, token=token, page_size=1000)
                for e in entries:
                    t0 = time.monotonic()
                    self._one(smap, bucket, e.name, meta.copies, st)
                    st["checked"] += 1
                    if t0 - last_save > STOP_CHECK_EVERY:
                        self._save(st)
                        last_save = t0
                        if os.path.exists(self.stop_path):
                            raise _Stopped()
                    pause = interval - (time.monotonic() - t0)
                    if pause > 0:
                        time.sleep(pause)
                if not token:
                    break
            self._tombs(smap, bucket, meta.copies, st)

    def _owners(self, smap, bucket, name, copies):
        """[(node, backend)] of the name's owners other than this node (one per URL), and
        whether this node is one."""
        store = self.cluster.store
        me = self.cluster.node
        seen, owners = set(), []
        for node in smap.ranked(placement_key("ais", bucket, name)):
            if node.url not in seen:
                seen.add(node.url)
                owners.append(node)
            if len(owners) == copies:
                break
        return ([(n, store.backend_of(n)) for n in owners if n.id != me.id],
                any(n.id == me.id for n in owners))

    def _one(self, smap, bucket, name, copies, st):
        store = self.cluster.store
        local = store.share.local
        me = self.cluster.node.id
        others, owner = self._owners(smap, bucket, name, copies)
        try:
            mine = local.stat(bucket, name).stamp
            states = store.copy_states(bucket, name, others)
            newest = newest_state(states)
            if newest is not None and newest[0] > mine:
                stamp, (node, backend), tomb = newest
                if tomb:
                    local.delete(bucket, name, stamp, keep=True)
                elif owner:
                    backend.push(bucket, name, [me], 1, required=False)
                else:
                    local.drop_copy(bucket, name, mine)
                st["repaired"] += 1
                return
            stale = [t[0].id for t, s in states if s is None or s is not AWAY and s[0] < mine]
            if stale:
                st["copied"] += store.push(bucket, name, stale, len(stale), required=False)
            if (not owner and len(others) == copies
                    and self._all_hold(store, bucket, name, others, mine)
                    and local.drop_copy(bucket, name, mine)):
                st["moved"] += 1
        except ObjectNotFound:
            pass  # deleted meanwhile
        except StoreError as exc:
            st["errors"] += 1
            log.warning("rebalance of ais://%s/%s: %s (a rerun retries it)", bucket, name, exc)

    @staticmethod
    def _all_hold(store, bucket, name, others, stamp):
        """True when every owner in `others` now holds `stamp` or newer."""
        states = store.copy_states(bucket, name, others)
        return all(s is not None and s is not AWAY and not s[1] and s[0] >= stamp
                   for _, s in states)

    def _tombs(self, smap, bucket, copies, st):
        """Send this node's deletes to the owners still holding an older version; collect
        tombstones older than TOMB_TTL."""
        store = self.cluster.store
        local = store.share.local
        old = (time.time() - TOMB_TTL) * 1000
        for name, stamp in local.tombs.items(bucket):
            if wall_ms(stamp) < old:
                local.tombs.drop(bucket, name, stamp)
                st["tombs_collected"] += 1
                continue
            others, _ = self._owners(smap, bucket, name, copies)
            for (node, backend), s in store.copy_states(bucket, name, others):
                if s is not AWAY and (s is None or s[0] < stamp):
                    try:
                        backend.delete(bucket, name, stamp, keep=True)
                        st["tombs_sent"] += 1
                    except StoreError as exc:
                        st["errors"] += 1
                        log.warning("rebalance: delete of ais://%s/%s on %s: %s", bucket, name,
                                    node.id, exc)
