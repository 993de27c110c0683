"""The epoch plans a node knows: records, their datasets and epoch orders, cached.

A plan's record (id, spec, counts, digest) is immutable once made. On one node it is a JSON
file under the data dir's `.sys/epochs/`; on a cluster a key in etcd
(`getbatch/epochs/<id>`), so every node finds it. The dataset itself is built once by the
node that creates the plan and persisted next to the record (`<id>.plan`); any other node
(or a node whose copy is gone) builds it again from the spec and the shard listing, and
serves it only if its digest matches the record's: a dataset that changed since the plan
was made is a 409, never a silently different order.

Each worker process keeps the last few datasets and epoch orders in memory.
"""
import json
import os
import threading
import time

from ..archive.lru import LRU
from ..batch.errors import BatchError, NotFound
from ..cluster.etcd import EtcdUnavailable
from ..cluster.membership import PREFIX
from ..jobs.registry import new_id
from ..store.errors import Unavailable
from . import dataset as ds_mod
from .order import permutation, step_count
from .spec import parse_spec

EPOCHS = PREFIX + "epochs/"
KEEP_DATASETS = 4
KEEP_ORDERS = 8


class Conflict(BatchError):
    status = 409


def plan_not_found(plan_id):
    return NotFound(f"epoch plan {plan_id!r} does not exist (GET /v1/ml/epochs lists the "
                    "plans)")


class Plans:
    def __init__(self, data_dir, storage, etcd=None, copies=None):
        """`storage`: the Storage plans are listed from (on a cluster, the cluster's);
        `etcd`: the cluster's Etcd, or None on a single node; `copies`: on a cluster, the
        replicas.PlanCopies that keep a dataset on every node."""
        self.dir = os.path.join(data_dir, ".sys", "epochs")
        self.storage = storage
        self.etcd = etcd
        self.copies = copies
        self._records = {}     # immutable: kept once read
        self._datasets = LRU(KEEP_DATASETS)
        self._orders = LRU(KEEP_ORDERS)
        self._lock = threading.Lock()
        os.makedirs(self.dir, exist_ok=True)

    # ---- records
    def create(self, doc):
        """Validate `doc`, build its dataset, register it; the new record."""
        spec = parse_spec(doc)
        t0 = time.monotonic()
        ds = ds_mod.build(spec, self.storage)
        rec = {"id": "ep-" + new_id(), "spec": spec.doc(), "samples": ds.samples,
               "members": ds.members, "shards": len(ds.shards),
               "steps": step_count(ds.samples, spec.batch_size, spec.world_size,
                                   spec.drop_last),
               "digest": ds.digest, "plan_bytes": ds.nbytes(),
               "build_seconds": round(time.monotonic() - t0, 3),
               "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self._save_dataset(rec["id"], ds)
        text = json.dumps(rec)
        if self.etcd is not None:
            try:
                created, _ = self.etcd.create(EPOCHS + rec["id"], text)
            except EtcdUnavailable as exc:
                raise Unavailable(f"cannot register the epoch plan: {exc}") from None
            if not created:   # ten random letters and digits: never in practice
                raise Conflict(f"epoch plan id {rec['id']} exists already; retry")
        else:
            _write_atomic(self._path(rec["id"], ".json"), text.encode())
        self._records[rec["id"]] = rec
        self._datasets.put(rec["id"], ds)
        if self.copies is not None:
            self.copies.push(rec["id"], ds.to_bytes())
        return rec

    def get(self, plan_id):
        """The record of `plan_id`; NotFound (404) when there is none."""
        rec = self._records.get(plan_id)
        if rec is not None:
            return rec
        if not isinstance(plan_id, str) or not plan_id.startswith("ep-") or "/" in plan_id:
            raise plan_not_found(plan_id)
        if self.etcd is not None:
            try:
                kv = self.etcd.get(EPOCHS + plan_id)
            except EtcdUnavailable as exc:
                raise Unavailable(f"cannot look up epoch plan {plan_id}: {exc}") from None
            text = kv.value if kv is not None else None
        else:
            try:
                with open(self._path(plan_id, ".json")) as f:
                    text = f.read()
            except FileNotFoundError:
                text = None
        if text is None:
            raise plan_not_found(plan_id)
        rec = self._records[plan_id] = json.loads(text)
        return rec

    def list(self):
        """Every record, oldest first."""
        if self.etcd is not None:
            try:
                kvs, _ = self.etcd.range(EPOCHS)
            except EtcdUnavailable as exc:
                raise Unavailable(f"cannot list epoch plans: {exc}") from None
            recs = [json.loads(kv.value) for kv in kvs]
        else:
            recs = []
            for name in os.listdir(self.dir):
                if name.endswith(".json"):
                    try:
                        recs.append(self.get(name[:-5]))
                    except (NotFound, ValueError):
                        continue
        return sorted(recs, key=lambda r: (r["created"], r["id"]))

    def delete(self, plan_id):
        self.get(plan_id)
        if self.etcd is not None:
            try:
                self.etcd.delete(EPOCHS + plan_id)
            except EtcdUnavailable as exc:
                raise Unavailable(f"cannot delete epoch plan {plan_id}: {exc}") from None
        for ext in (".json", ".plan"):
            try:
                os.unlink(self._path(plan_id, ext))
            except FileNotFoundError:
                pass
        self._records.pop(plan_id, None)
        self._datasets.clear()

    # ---- datasets and orders
    def dataset(self, rec):
        """The Dataset of record `rec`: cached, read from this node's copy, or built again
        (Conflict when the data changed since the plan was made)."""
        pid = rec["id"]
        with self._lock:
            ds = self._datasets.get(pid)
            if ds is not None:
                return ds
            ds = self.local_dataset(rec)
            if ds is None and self.copies is not None:
                ds = self.adopt(rec, self.copies.pull(pid))
            if ds is None:
                ds = ds_mod.build(parse_spec(rec["spec"]), self.storage)
                if ds.digest != rec["digest"]:
                    raise Conflict(f"epoch plan {pid}: the dataset changed since the plan was "
                                   f"made ({ds.samples} samples now, {rec['samples']} then): "
                                   "create a new plan")
                self._save_dataset(pid, ds)
            self._datasets.put(pid, ds)
            return ds

    def local_dataset(self, rec):
        """This node's copy of the dataset of `rec`, or None."""
        ds = self._datasets.get(rec["id"])
        if ds is not None:
            return ds
        try:
            with open(self._path(rec["id"], ".plan"), "rb") as f:
                return self.adopt(rec, f.read(), save=False)
        except FileNotFoundError:
            return None

    def adopt(self, rec, data, save=True):
        """The Dataset in `data` (bytes, or None) if it is the one `rec` describes (kept
        here when `save`); None otherwise."""
        if data is None:
            return None
        try:
            ds = ds_mod.Dataset.from_bytes(data)
        except (ValueError, IndexError):
            return None
        if ds.digest != rec["digest"]:
            return None
        if save:
            self._save_dataset(rec["id"], ds)
        return ds

    def order(self, rec, epoch):
        """(Dataset, array of sample ids in epoch `epoch`'s order)."""
        ds = self.dataset(rec)
        key = (rec["id"], epoch)
        with self._lock:
            perm = self._orders.get(key)
        if perm is None:
            spec = rec["spec"]
            sh = spec["shuffle"]
            perm = permutation(ds, sh["mode"], sh.get("window", 0), spec["seed"], epoch)
            with self._lock:
                self._orders.put(key, perm)
        return ds, perm

    def _save_dataset(self, pid, ds):
        _write_atomic(self._path(pid, ".plan"), ds.to_bytes())

    def _path(self, pid, ext):
        return os.path.join(self.dir, pid + ext)


def _write_atomic(path, data):
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
