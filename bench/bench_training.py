"""Training input: the getbatch epoch loader against what users would pick instead.

    PYTHONPATH=src python bench/bench_training.py [--samples 100000] [--workers 0 2 4]
        [--only getbatch-epoch,webdataset,...] [--skip-cluster] [--out bench/RESULTS-training.md]

All loaders read the same samples (`--samples` of `--size` bytes, random data, one
`<key>.bin` file a sample) packed in .tar shards of about `--shard` bytes, shuffled, into a
DataLoader with 0, 2 and 4 workers, batches of `--batch` samples; a "training loop" that only
counts, `--rounds` times, interleaved (medians reported). Per run: samples/s delivered to the
loop, p50/p99 time between batches, the peak memory of the loader's processes (main +
DataLoader workers, PSS sampled from /proc; the node and nginx left out) and how much of it
the loader added over what the process held before the loader was built (its index, cuts,
workers and buffers), and the shuffle's locality: the mean number of distinct shards
one batch reads.

Loaders:
- getbatch-epoch: getbatch.torch EpochDataset over a plan (shuffle full, verified xxhash64);
- getbatch-shard: the same with the plan's shard shuffle (window 4096 samples);
- getbatch-epoch-noverify: getbatch-epoch without checksums (the node sends zero-copy, the
  client checks nothing);
- getbatch-epoch-ahead2: getbatch-epoch with the node's look-ahead on (2 steps; what it
  costs when the data is in the page cache anyway);
- getbatch-names: getbatch.torch BatchesDataset, the client shuffling and sending the names
  of each batch (what aistore.pytorch and Lhotse's AISBatchLoader do against getbatch);
- aistore-pytorch: aistore 2.0.0's AISBatchIterDataset (one GetBatch per `--batch` names,
  through the SDK's Batch API) over a source that yields the shards' members shuffled as
  `<shard>/<member>` objects (the dataset itself neither shuffles nor reaches into shards);
- lhotse: lhotse's AISBatchLoader on a CutSet of one Recording a sample
  (`ais://<bucket>/<shard>/<member>`), SimpleCutSampler shuffling, one loader call per batch
  in the DataLoader's workers, as lhotse's datasets do with `use_batch_loader=True` (with 0
  workers it keeps every sample of the epoch in memory: `--samples` x `--size` bytes);
- webdataset: webdataset 1.0.2 reading the shards over HTTP from nginx, shard shuffle and a
  1000-sample shuffle buffer;
- mds: MosaicML Streaming 0.13.0 over MDS files converted from the shards (conversion timed
  apart; the MDS copy is local, as Streaming's cache would hold it);
- get-per-sample: one HTTP GET per sample through nginx (a Range of the shard file), over a
  random subset of `--per-sample` samples.

Then two getbatch-only measurements: look-ahead (cold page cache, one rank stepping with
`--compute-ms` of "compute" per step and no client prefetch, with `ahead` 0 and 2: the time
each step waits for its batch), and a kill: a 3-node cluster (copies=2) whose serving node is
SIGKILLed mid-epoch while the loader reads: every sample must arrive once.

mosaicml-streaming's requirements would replace torch's CPU build: install it with
`pip install --no-deps mosaicml-streaming==0.13.0`. It imports torchvision for its vision
datasets only; when torchvision is missing a stand-in module lets it import.
"""
import argparse
import gc
import importlib.machinery
import io
import os
import random
import shutil
import socket
import statistics
import string
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import types

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bench_warmup import _evict as evict  # noqa: E402  (bench/ is on the path as the script's)
from tests.support.nodes import Node, free_port, serve_argv  # noqa: E402

BUCKET = "train"


# ---- data ---------------------------------------------------------------------------------

def make_bucket(url, copies=1):
    r = requests.post(f"{url}/v1/buckets/{BUCKET}", json={"action": "create-bck"}, timeout=30)
    assert r.status_code == 200, r.text
    if copies > 1:
        r = requests.patch(f"{url}/v1/buckets/{BUCKET}", timeout=30, json={
            "action": "set-bprops", "value": {"mirror": {"enabled": True, "copies": copies}}})
        assert r.status_code == 200, r.text


def make_shards(url, samples, size, shard_bytes):
    """PUT the shards; [(shard name, [(member, offset, size)])] (offsets for GET per sample)."""
    per = max(1, shard_bytes // (size + 512))
    rnd = random.Random(0)
    block = rnd.randbytes(size * 64)
    s = requests.Session()
    layout = []
    for first in range(0, samples, per):
        name = f"shard-{first // per:06d}.tar"
        buf = io.BytesIO()
        members = []
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
            for i in range(first, min(samples, first + per)):
                data = block[(i % 64) * size:(i % 64 + 1) * size]
                info = tarfile.TarInfo(f"{i:08d}.bin")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        raw = buf.getvalue()
        with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
            members = [(m.name, m.offset_data, m.size) for m in tf.getmembers()]
        r = s.put(f"{url}/v1/objects/{BUCKET}/{name}", data=raw, timeout=60)
        assert r.status_code == 200, r.text
        layout.append((name, members))
    return layout


def shard_of_key(layout):
    out = {}
    for si, (_, members) in enumerate(layout):
        for m, _, _ in members:
            out[m.split(".")[0]] = si
    return out


# ---- measuring ----------------------------------------------------------------------------

class Memory:
    """Peak memory of this process and its descendants (DataLoader workers), sampled: the sum
    of their PSS, which splits the pages a forked worker shares with its parent between them
    (RSS would count torch's pages once per worker). The trees of `exclude` (the node, nginx:
    also children of this process) are left out."""

    def __init__(self, exclude=()):
        self.exclude = set(exclude)
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()

    def _run(self):
        while not self._stop.wait(0.1):
            self.peak = max(self.peak, tree_pss(os.getpid(), self.exclude))


def tree_pss(pid, exclude=()):
    """PSS bytes of `pid` and its descendants, less the subtrees rooted at `exclude`."""
    children = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(p))
            except (OSError, IndexError, ValueError):
                continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        if p in exclude:
            continue
        todo += children.get(p, [])
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) << 10
                        break
        except OSError:
            pass
    return total


def run_loader(batches, keys_of, shard_of, exclude=()):
    """Drive a loader; its figures."""
    gaps, seen, spread = [], [], []
    with Memory(exclude) as mem:
        t0 = last = time.perf_counter()
        for b in batches:
            now = time.perf_counter()
            gaps.append(now - last)
            last = now
            ks = keys_of(b)
            seen += ks
            spread.append(len({shard_of[k] for k in ks}))
        secs = time.perf_counter() - t0
    gaps.sort()
    return {"samples": len(seen), "unique": len(set(seen)), "secs": secs,
            "rate": len(seen) / secs, "p50": gaps[len(gaps) // 2],
            "p99": gaps[min(len(gaps) - 1, int(len(gaps) * 0.99))],
            "mem": mem.peak, "shards_per_batch": statistics.mean(spread)}


def _key(name):
    return name.rsplit("/", 1)[-1].split(".")[0]


# ---- loaders ------------------------------------------------------------------------------

def getbatch_epoch(ctx, workers, shuffle, ahead=None, verify=True):
    from getbatch.loader.plans import create_plan
    from getbatch.torch import EpochDataset, EpochLoader
    rec = create_plan(ctx.url, bucket=BUCKET, shards={"prefix": "shard-"}, seed=1,
                      batch_size=ctx.batch, shuffle=shuffle)
    loader = EpochLoader(EpochDataset(ctx.url, rec["id"], epoch=0, prefetch=2, ahead=ahead,
                                      verify=verify), num_workers=workers)
    return loader, lambda b: [_key(n) for n, _ in b], ctx.samples


def getbatch_names(ctx, workers):
    from getbatch.torch import BatchesDataset, EpochLoader
    entries = [{"objname": s, "archpath": m} for s, members in ctx.layout for m, _, _ in members]
    random.Random(1).shuffle(entries)
    batches = [entries[i:i + ctx.batch] for i in range(0, len(entries), ctx.batch)]
    loader = EpochLoader(BatchesDataset(ctx.url, batches, bucket=BUCKET), num_workers=workers)
    return loader, lambda b: [_key(n) for n, _ in b], ctx.samples


def _shuffled_members(client, names):
    """An aistore AISSource over the shards' members, in the order given, as `<shard>/<member>`
    objects (a name getbatch resolves into the shard)."""
    from aistore.sdk import AISSource

    class ShuffledMembers(AISSource):
        @property
        def client(self):
            return client

        def list_all_objects_iter(self, prefix="", props="name,size"):
            bucket = client.bucket(BUCKET)
            return (bucket.object(n) for n in names)

        def list_urls(self, prefix="", etl=None):
            return (f"ais://{BUCKET}/{n}" for n in names)

    return ShuffledMembers()


def aistore_pytorch_loader(ctx, workers):
    from aistore.pytorch.batch_iter_dataset import AISBatchIterDataset
    from aistore.sdk import Client
    from torch.utils.data import DataLoader
    names = [f"{s}/{m}" for s, members in ctx.layout for m, _, _ in members]
    random.Random(1).shuffle(names)
    client = Client(ctx.url)
    ds = AISBatchIterDataset(_shuffled_members(client, names), client=client,
                             max_batch_size=ctx.batch)
    return (DataLoader(ds, batch_size=ctx.batch, num_workers=workers, collate_fn=list),
            lambda b: [_key(n) for n, _ in b], ctx.samples)


class _LhotseBatches:
    """Map-style over CutSets (lhotse's sampler yields one a batch): AISBatchLoader fetches
    the batch in one GetBatch; (cut id, bytes) out."""

    def __init__(self):
        self.loader = None

    def __getitem__(self, cuts):
        if self.loader is None:     # one client per worker process
            from lhotse.ais.batch_loader import AISBatchLoader
            self.loader = AISBatchLoader()
        cuts = self.loader(cuts)
        return [(c.id, c.recording.sources[0].source) for c in cuts]


def lhotse_loader(ctx, workers):
    from lhotse import CutSet, MonoCut, Recording
    from lhotse.audio import AudioSource
    from lhotse.dataset import SimpleCutSampler
    from torch.utils.data import DataLoader
    os.environ["AIS_ENDPOINT"] = ctx.url
    cuts = []
    # built anew for every run: AISBatchLoader rewrites the cuts it loads in place
    for s, members in ctx.layout:
        for m, _, size in members:
            rec = Recording(id=_key(m), sampling_rate=8000, num_samples=size // 2,
                            duration=size / 16000, sources=[AudioSource(
                                type="url", channels=[0], source=f"ais://{BUCKET}/{s}/{m}")])
            cuts.append(MonoCut(id=rec.id, start=0, duration=rec.duration, channel=0,
                                recording=rec))
    sampler = SimpleCutSampler(CutSet.from_cuts(cuts), max_cuts=ctx.batch, shuffle=True,
                               seed=1)
    return (DataLoader(_LhotseBatches(), sampler=sampler, batch_size=None,
                       num_workers=workers),
            lambda b: [k for k, _ in b], ctx.samples)


def webdataset_loader(ctx, workers):
    import webdataset as wds
    from torch.utils.data import DataLoader
    urls = [f"{ctx.nginx}/{s}" for s, _ in ctx.layout]
    ds = (wds.WebDataset(urls, shardshuffle=len(urls), empty_check=False, seed=1)
          .shuffle(1000).batched(ctx.batch, collation_fn=list))
    return (DataLoader(ds, batch_size=None, num_workers=workers),
            lambda b: [s["__key__"] for s in b], ctx.samples)


def _streaming():
    try:
        import torchvision  # noqa: F401
    except ImportError:   # the stand-in (module docstring)
        tv = types.ModuleType("torchvision")
        for sub, attrs in (("datasets", {"VisionDataset": object, "CIFAR10": object}),
                           ("transforms", {}), ("transforms.functional", {"to_tensor": None})):
            m = types.ModuleType("torchvision." + sub)
            m.__dict__.update(attrs)
            m.__spec__ = importlib.machinery.ModuleSpec(m.__name__, None)
            sys.modules["torchvision." + sub] = m
        tv.__spec__ = importlib.machinery.ModuleSpec("torchvision", None)
        sys.modules["torchvision"] = tv
    import streaming
    return streaming


def convert_mds(ctx):
    streaming = _streaming()
    out = os.path.join(ctx.work, "mds")
    t0 = time.perf_counter()
    with streaming.MDSWriter(out=out, columns={"key": "str", "bin": "bytes"},
                             size_limit=1 << 26) as w:
        for shard, _ in ctx.layout:
            with tarfile.open(os.path.join(ctx.objs, shard)) as tf:
                for m in tf:
                    w.write({"key": m.name.split(".")[0], "bin": tf.extractfile(m).read()})
    return out, time.perf_counter() - t0


def mds_loader(ctx, workers):
    streaming = _streaming()
    from torch.utils.data import DataLoader
    streaming.base.util.clean_stale_shared_memory()
    ds = streaming.StreamingDataset(local=ctx.mds, shuffle=True, shuffle_seed=1,
                                    batch_size=ctx.batch)
    return (DataLoader(ds, batch_size=ctx.batch, num_workers=workers, collate_fn=list),
            lambda b: [s["key"] for s in b], ctx.samples)


class _PerSample:
    """Map-style: one GET (a Range of its shard) per sample."""

    def __init__(self, base, index):
        self.base, self.index, self.s = base, index, None

    def __len__(self):
        return len(self.index)

    def __getitem__(self, i):
        if self.s is None:
            self.s = requests.Session()
        shard, name, off, size = self.index[i]
        r = self.s.get(f"{self.base}/{shard}", headers={"Range": f"bytes={off}-{off + size - 1}"},
                       timeout=30)
        assert r.status_code == 206 and len(r.content) == size
        return name, r.content


def per_sample_loader(ctx, workers):
    from torch.utils.data import DataLoader
    index = [(s, m, off, size) for s, members in ctx.layout for m, off, size in members]
    # a random subset: at a few hundred GETs a second a whole epoch takes too long here
    index = random.Random(2).sample(index, min(len(index), ctx.per_sample))
    return (DataLoader(_PerSample(ctx.nginx, index), batch_size=ctx.batch, shuffle=True,
                       num_workers=workers, collate_fn=list),
            lambda b: [_key(n) for n, _ in b], len(index))


LOADERS = {
    "getbatch-epoch": lambda c, w: getbatch_epoch(c, w, {"mode": "full"}),
    "getbatch-shard": lambda c, w: getbatch_epoch(c, w, {"mode": "shard", "window": 4096}),
    "getbatch-epoch-ahead2": lambda c, w: getbatch_epoch(c, w, {"mode": "full"}, ahead=2),
    "getbatch-epoch-noverify": lambda c, w: getbatch_epoch(c, w, {"mode": "full"},
                                                           verify=False),
    "getbatch-names": getbatch_names,
    "aistore-pytorch": aistore_pytorch_loader,
    "lhotse": lhotse_loader,
    "webdataset": webdataset_loader,
    "mds": mds_loader,
    "get-per-sample": per_sample_loader,
}


# ---- servers ------------------------------------------------------------------------------

def start_nginx(work, root):
    prefix = os.path.join(work, "nginx")
    os.makedirs(os.path.join(prefix, "tmp"))
    port = free_port()
    with open(os.path.join(HERE, "nginx.conf.in")) as f:
        conf = string.Template(f.read()).substitute(prefix=prefix, root=root, port=port)
    with open(os.path.join(prefix, "nginx.conf"), "w") as f:
        f.write(conf)
    proc = subprocess.Popen(["nginx", "-p", prefix, "-c", os.path.join(prefix, "nginx.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("nginx did not start")
            time.sleep(0.1)


# ---- getbatch-only measurements -----------------------------------------------------------

def lookahead(ctx, compute, steps=30):
    """Median and p99 wait per step on a cold cache, with ahead 0 and 2 (one rank stepping
    without prefetch, `compute` seconds of work per step)."""
    from getbatch.loader.fetch import Fetcher
    from getbatch.loader.plans import create_plan
    out = {}
    for ahead in (0, 2, 0, 2):
        rec = create_plan(ctx.url, bucket=BUCKET, shards={"prefix": "shard-"},
                          seed=ahead + len(out), batch_size=ctx.batch)
        evict(ctx.node.data_dir)
        f = Fetcher(ctx.url, verify=False)
        waits = []
        for k in range(min(steps, rec["steps"])):
            t0 = time.perf_counter()
            body = {"plan": rec["id"], "epoch": 0, "rank": 0, "step": k, "strm": True,
                    "ahead": ahead}
            with f.session.get(ctx.url + "/v1/ml/moss", json=body, timeout=60) as r:
                assert r.status_code == 200, r.text
            waits.append(time.perf_counter() - t0)
            time.sleep(compute)
        out.setdefault(ahead, []).extend(waits)
    return {a: (statistics.median(w), sorted(w)[int(len(w) * 0.99)]) for a, w in out.items()}


def kill_test(work, samples, size, shard_bytes, batch):
    """A 3-node cluster, copies=2; SIGKILL the node the loader asks first, mid-epoch."""
    from getbatch.loader.plans import create_plan
    from getbatch.torch import EpochDataset, EpochLoader
    from tests.cluster.nodes import Cluster
    c = Cluster(os.path.join(work, "cluster"), n=3)
    try:
        u = c.urls
        make_bucket(u[0], copies=2)
        make_shards(u[0], samples, size, shard_bytes)
        rec = create_plan(u[0], bucket=BUCKET, shards={"prefix": "shard-"}, seed=3,
                          batch_size=batch)
        ds = EpochDataset(u, rec["id"])
        keys, killed_at, t0 = [], None, time.perf_counter()
        for b in EpochLoader(ds, num_workers=2):
            keys += [_key(n) for n, _ in b]
            if killed_at is None and b.step >= rec["steps"] // 3:
                c.kill(0)
                killed_at = b.step
        return {"samples": len(keys), "unique": len(set(keys)), "expected": rec["samples"],
                "killed_at_step": killed_at, "steps": rec["steps"],
                "secs": time.perf_counter() - t0}
    finally:
        c.close()


# ---- main ---------------------------------------------------------------------------------

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=100_000)
    p.add_argument("--size", type=int, default=16 << 10)
    p.add_argument("--shard", type=int, default=1 << 20, help="bytes per shard (about)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2, 4])
    p.add_argument("--only", default=",".join(n for n in LOADERS if "ahead2" not in n and "noverify" not in n))
    p.add_argument("--rounds", type=int, default=1, help="runs of each loader (medians shown)")
    p.add_argument("--per-sample", type=int, default=10_000,
                   help="samples the GET-per-sample loader reads (a random subset)")
    p.add_argument("--compute-ms", type=int, default=200,
                   help="work per step in the look-ahead measurement")
    p.add_argument("--skip-lookahead", action="store_true")
    p.add_argument("--skip-cluster", action="store_true")
    p.add_argument("--kill-samples", type=int, default=20_000)
    p.add_argument("--out", help="write the Markdown tables here too")
    args = p.parse_args(argv)
    ctx = types.SimpleNamespace(batch=args.batch, work=tempfile.mkdtemp(prefix="gbtrain-"),
                                samples=args.samples, per_sample=args.per_sample)
    os.chmod(ctx.work, 0o755)    # nginx's workers run as another user
    lines = [f"{args.samples} samples of {args.size} B in .tar shards of ~{args.shard} B, "
             f"batches of {args.batch}; {os.cpu_count()} cores (shared); medians of "
             f"{args.rounds} interleaved rounds", ""]
    nginx = None
    try:
        ctx.node = Node(os.path.join(ctx.work, "data"), os.path.join(ctx.work, "node.log"),
                        serve_argv(workers=2, threads=8))
        ctx.url = ctx.node.url
        t0 = time.perf_counter()
        make_bucket(ctx.url)
        ctx.layout = make_shards(ctx.url, args.samples, args.size, args.shard)
        print(f"{len(ctx.layout)} shards written in {time.perf_counter() - t0:.1f} s",
              flush=True)
        ctx.objs = os.path.join(ctx.node.data_dir, "ais", BUCKET)
        nginx, ctx.nginx = start_nginx(ctx.work, ctx.objs)
        shard_of = shard_of_key(ctx.layout)
        only = args.only.split(",")
        if "mds" in only:
            ctx.mds, secs = convert_mds(ctx)
            lines += [f"MDS conversion: {secs:.1f} s "
                      f"({args.samples / secs:.0f} samples/s, read from local shards)", ""]
            print(lines[-2], flush=True)
        lines += ["| loader | workers | samples/s | p50 step ms | p99 step ms | peak PSS MiB "
                  "| added MiB | shards/batch | all once |",
                  "|---|---|---|---|---|---|---|---|---|"]
        servers = (ctx.node.proc.pid, nginx.pid)
        runs = {}
        for rnd in range(args.rounds):
            # rounds interleave the loaders, so a burst of load elsewhere hits them alike
            for name in only:
                for w in args.workers:
                    gc.collect()     # the last loader's garbage is not this one's memory
                    before = tree_pss(os.getpid(), servers)
                    loader, keys_of, expected = LOADERS[name](ctx, w)
                    r = run_loader(loader, keys_of, shard_of, servers)
                    del loader
                    r["added"] = r["mem"] - before
                    r["ok"] = (r["samples"] >= expected - args.batch
                               and r["unique"] == r["samples"])
                    runs.setdefault((name, w), []).append(r)
                    print(rnd, name, w, f"{r['rate']:.0f}/s", flush=True)
        for (name, w), rs in runs.items():
            med = {k: statistics.median(r[k] for r in rs)
                   for k in ("rate", "p50", "p99", "mem", "added", "shards_per_batch")}
            lines.append(f"| {name} | {w} | {med['rate']:.0f} | {med['p50'] * 1e3:.1f} | "
                         f"{med['p99'] * 1e3:.1f} | {med['mem'] / 2**20:.0f} | "
                         f"{med['added'] / 2**20:.0f} | "
                         f"{med['shards_per_batch']:.1f} | "
                         f"{'yes' if all(r['ok'] for r in rs) else 'NO'} |")
            print(lines[-1], flush=True)
        if not args.skip_lookahead:
            la = lookahead(ctx, args.compute_ms / 1e3)
            lines += ["", f"Look-ahead, cold page cache, {args.compute_ms} ms compute per step, "
                          "no client prefetch (wait per step):",
                      *(f"- ahead={a}: median {m * 1e3:.1f} ms, p99 {q * 1e3:.1f} ms"
                        for a, (m, q) in sorted(la.items()))]
            print("\n".join(lines[-3:]), flush=True)
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(10)
        if getattr(ctx, "node", None) is not None:
            ctx.node.stop()
    if not args.skip_cluster:
        k = kill_test(ctx.work, args.kill_samples, args.size, args.shard, args.batch)
        lines += ["", f"Kill mid-epoch (3 nodes, copies=2, node 0 SIGKILLed after step "
                      f"{k['killed_at_step']} of {k['steps']}): {k['samples']} samples "
                      f"delivered, {k['unique']} distinct, {k['expected']} expected, "
                      f"{k['secs']:.1f} s"]
        print(lines[-1], flush=True)
    shutil.rmtree(ctx.work, ignore_errors=True)
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
