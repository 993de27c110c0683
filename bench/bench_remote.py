"""GetBatch over aws:// buckets (a moto S3 server) against fetching from S3 directly.

Run: python bench/bench_remote.py [--rounds 5]
Starts moto_server and getbatch nodes (2 workers x 2 threads, reaching moto through the AWS
environment only) on loopback, uploads the data once, then times, median of `rounds`:

- 1,000 x 64 KiB objects in one GetBatch (.tar, streaming): cold cache (a fresh node, empty
  data dir) vs warm cache (the same batch again), against the same objects fetched one by one
  with boto3 (and with 16 boto3 threads);
- 10 remote .tar shards of 1,000 x 16 KiB members, 10 members of each in one GetBatch: cold
  (fresh node: index by ranged reads, then the members) and warm (index known, members ranged
  again), against downloading the 10 whole shards with boto3 (16 threads) and extracting the
  members with tarfile (what a reader without ranged reads does);
- bytes moved for the shard batch, measured in-process on the store (RemoteStore with a
  counting S3 client), against the shards' size.
Prints a table; bench/RESULTS-remote.md records a run.
"""
import argparse
import io
import os
import statistics
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "src"))

from tests.remote_servers import boto3_client, s3_env, start_moto  # noqa: E402
from tests.support.nodes import Node, serve_argv  # noqa: E402

N_OBJ, OBJ_SIZE = 1000, 64 << 10
N_SHARDS = 10
# (key prefix, members per shard, member size, members picked per shard)
SMALL = ("shards", 1000, 16 << 10, 10)     # 16.5 MB shards: fetched whole, then cached
BIG = ("big", 16, 4 << 20, 2)              # 64 MiB shards: index and members by ranged GETs
BUCKET = "bench-remote"


def upload(s3):
    s3.create_bucket(Bucket=BUCKET)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: s3.put_object(Bucket=BUCKET, Key=f"obj/{i:04d}",
                                               Body=os.urandom(OBJ_SIZE)), range(N_OBJ)))
    for prefix, n, size, _ in (SMALL, BIG):
        for s in range(N_SHARDS):
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tf:
                for m in range(n):
                    ti = tarfile.TarInfo(f"m{m:04d}.bin")
                    ti.size = size
                    tf.addfile(ti, io.BytesIO(os.urandom(size)))
            s3.put_object(Bucket=BUCKET, Key=f"{prefix}/s{s:02d}.tar", Body=buf.getvalue())


def picks(shape):
    prefix, n, _, k = shape
    step = n // k
    return [(f"{prefix}/s{s:02d}.tar", f"m{(m * step + s) % n:04d}.bin")
            for s in range(N_SHARDS) for m in range(k)]


def shard_bytes(shape):
    _, n, size, _ = shape
    return N_SHARDS * (n * (512 + size) + 10240)


def moss(url, entries):
    body = {"in": entries, "strm": True}
    r = requests.get(f"{url}/v1/ml/moss/{BUCKET}?provider=aws", json=body)
    r.raise_for_status()
    return len(r.content)


def obj_batch(url):
    return moss(url, [{"objname": f"obj/{i:04d}"} for i in range(N_OBJ)])


def shard_batch(url, shape):
    return moss(url, [{"objname": s, "archpath": m} for s, m in picks(shape)])


def boto3_one_by_one(s3):
    for i in range(N_OBJ):
        s3.get_object(Bucket=BUCKET, Key=f"obj/{i:04d}")["Body"].read()


def boto3_threads(s3):
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: s3.get_object(Bucket=BUCKET, Key=f"obj/{i:04d}")["Body"].read(),
                      range(N_OBJ)))


def whole_shards(s3, shape):
    wanted = {}
    for s, m in picks(shape):
        wanted.setdefault(s, []).append(m)

    def one(item):
        key, members = item
        blob = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        with tarfile.open(fileobj=io.BytesIO(blob)) as tf:
            return [tf.extractfile(m).read() for m in members]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, wanted.items()))


def timed(fn, *args):
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def fresh_node(moto, tmp):
    d = tempfile.mkdtemp(dir=tmp)
    return Node(os.path.join(d, "data"), os.path.join(d, "server.log"),
                serve_argv(workers=2, threads=2), env=s3_env(moto))


def bytes_moved(moto, tmp, shape):
    """Bytes the store GETs for a shard batch, cold then warm (in-process)."""
    from getbatch.store.remote import RemoteStore
    from getbatch.store.s3 import S3Client

    class Counting(S3Client):
        moved = 0

        def get(self, *a, **kw):
            meta, body = super().get(*a, **kw)
            read = body.read

            def counted(n):
                data = read(n)
                Counting.moved += len(data)
                return data
            body.read = counted
            return meta, body

    out = []
    store = RemoteStore(Counting(moto.url, "us-east-1"), tempfile.mkdtemp(dir=tmp),
                        cache_bytes=1 << 30)
    for _ in range(2):
        Counting.moved = 0
        reader = store.batch_reader(len(picks(shape)))
        try:
            for s, m in picks(shape):
                reader.shard(BUCKET, s).read(m)
        finally:
            reader.close()
        out.append(Counting.moved)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    for k, v in s3_env(type("M", (), {"url": ""})).items():
        if k != "AWS_ENDPOINT_URL":
            os.environ.setdefault(k, v)
    tmp = tempfile.mkdtemp(prefix="bench-remote-")
    moto = start_moto(tmp)
    try:
        s3 = boto3_client(moto)
        t = time.perf_counter()
        upload(s3)
        print(f"uploaded in {time.perf_counter() - t:.1f} s", flush=True)
        keys = ("obj_cold", "obj_warm", "boto3_seq", "boto3_16", "small_cold", "small_warm",
                "small_whole", "big_cold", "big_warm", "big_whole")
        res = {k: [] for k in keys}
        for r in range(args.rounds):
            node = fresh_node(moto, tmp)
            try:
                res["obj_cold"].append(timed(obj_batch, node.url))
                res["obj_warm"].append(timed(obj_batch, node.url))
                for name, shape in (("small", SMALL), ("big", BIG)):
                    res[f"{name}_cold"].append(timed(shard_batch, node.url, shape))
                    res[f"{name}_warm"].append(timed(shard_batch, node.url, shape))
            finally:
                node.stop()
            res["boto3_seq"].append(timed(boto3_one_by_one, s3))
            res["boto3_16"].append(timed(boto3_threads, s3))
            res["small_whole"].append(timed(whole_shards, s3, SMALL))
            res["big_whole"].append(timed(whole_shards, s3, BIG))
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in res.items()),
                  flush=True)
        med = {k: statistics.median(v) for k, v in res.items()}
        print()
        print("| what | median s | ratio |")
        print("|---|---|---|")
        print(f"| 1000 x 64 KiB, GetBatch cold cache | {med['obj_cold']:.3f} | "
              f"{med['boto3_seq'] / med['obj_cold']:.2f}x boto3 one by one, "
              f"{med['boto3_16'] / med['obj_cold']:.2f}x boto3 16 threads |")
        print(f"| 1000 x 64 KiB, GetBatch warm cache | {med['obj_warm']:.3f} | "
              f"{med['boto3_seq'] / med['obj_warm']:.2f}x boto3 one by one, "
              f"{med['obj_cold'] / med['obj_warm']:.2f}x cold |")
        print(f"| 1000 x 64 KiB, boto3 one by one | {med['boto3_seq']:.3f} | 1 |")
        print(f"| 1000 x 64 KiB, boto3 16 threads | {med['boto3_16']:.3f} | "
              f"{med['boto3_seq'] / med['boto3_16']:.2f}x one by one |")
        for name, shape in (("small", SMALL), ("big", BIG)):
            _, n, size, k = shape
            what = f"10 shards of {n} x {size >> 10} KiB, {k} members each"
            print(f"| {what}, GetBatch cold | {med[name + '_cold']:.3f} | "
                  f"{med[name + '_whole'] / med[name + '_cold']:.2f}x whole shards |")
            print(f"| {what}, GetBatch warm | {med[name + '_warm']:.3f} | "
                  f"{med[name + '_whole'] / med[name + '_warm']:.2f}x whole shards |")
            print(f"| {what}, whole shards (boto3 16 threads) + tarfile | "
                  f"{med[name + '_whole']:.3f} | 1 |")
        for name, shape in (("small", SMALL), ("big", BIG)):
            cold_b, warm_b = bytes_moved(moto, tmp, shape)
            total = shard_bytes(shape)
            print(f"\n{name} shards, bytes from S3 for the batch: cold {cold_b:,}, warm {warm_b:,};"
                  f" whole shards {total:,} ({total / max(cold_b, 1):.1f}x cold)")
    finally:
        moto.stop()


if __name__ == "__main__":
    main()
