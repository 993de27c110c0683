"""Rebalance: every node moves the objects it holds but does not own to their current owners.

After a node joins or leaves, HRW names new owners for some objects; reads still find them
(they try the ranked nodes in turn), but each such read costs extra hops and a bucket's
`copies` may no longer be on the top nodes. A rebalance walks this node's local objects and,
for each one, makes sure every current owner holds it (copying from here where one does not),
then deletes the local copy if this node is not an owner.

Safe to kill and rerun: a copy is an atomic PUT on the owner, and the local copy is deleted
only after every owner was seen to hold the object; a rerun finds nothing left to move.
Throttled: at most `rate` objects are checked per second. One run per node at a time (a lock
file shared by the worker processes); progress is kept in a JSON file of the data dir so that
any worker of the node can report it.
"""
import fcntl
import json
import logging
import os
import threading
import time

from ..store.errors import ObjectNotFound, StoreError
from .smap import placement_key

log = logging.getLogger("getbatch.rebalance")

DEFAULT_RATE = 500  # objects checked per second


class Rebalance:
    def __init__(self, cluster, data_dir):
        self.cluster = cluster
        sysdir = os.path.join(data_dir, ".sys")
        self.status_path = os.path.join(sysdir, "rebalance.json")
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
        threading.Thread(target=self._run, args=(fd, rate), name="rebalance", daemon=True).start()
        return True

    def _save(self, st):
        tmp = f"{self.status_path}.{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(st, f)
        os.replace(tmp, self.status_path)

    def _run(self, lock_fd, rate):
        st = {"node": self.cluster.node.id, "state": "running", "started": time.time(),
              "checked": 0, "moved": 0, "copied": 0, "errors": 0, "smap_version": 0}
        try:
            self._save(st)
            self.run(st, rate)
            st["state"] = "done"
        except Exception as exc:
            log.exception("rebalance failed")
            st.update(state="failed", error=str(exc))
        finally:
            st["finished"] = time.time()
            self._save(st)
            os.close(lock_fd)
        log.info("rebalance %s: %d objects checked, %d moved away, %d copies made, %d errors",
                 st["state"], st["checked"], st["moved"], st["copied"], st["errors"])

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
                    if t0 - last_save > 0.5:
                        self._save(st)
                        last_save = t0
                    pause = interval - (time.monotonic() - t0)
                    if pause > 0:
                        time.sleep(pause)
                if not token:
                    break

    def _one(self, smap, bucket, name, copies, st):
        store = self.cluster.store
        me = self.cluster.node.id
        owners = smap.ranked(placement_key("ais", bucket, name))[:copies]
        try:
            missing = []
            for node in owners:
                if node.id == me:
                    continue
                try:
                    store._backend_of(node).stat(bucket, name)
                except ObjectNotFound:
                    missing.append(node.id)
            if missing:
                made = store.push(bucket, name, missing, len(missing))
                st["copied"] += made
            if all(n.id != me for n in owners):
                store.share.local.delete(bucket, name)
                st["moved"] += 1
        except ObjectNotFound:
            pass  # deleted meanwhile
        except StoreError as exc:
            st["errors"] += 1
            log.warning("rebalance of ais://%s/%s: %s (a rerun retries it)", bucket, name, exc)
