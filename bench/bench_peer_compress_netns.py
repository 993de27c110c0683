"""Compressed peer streams (peer_compression) on shaped links: where they win, where they lose.

    sudo PYTHONPATH=src:. python bench/bench_peer_compress_netns.py [--rates 100mbit,1gbit]
        [--rounds 3] [--objects 96]

Needs root and iproute2 (bench/netns.py). Three hosts (namespaces, links shaped both ways to
the rate with tc tbf) run a 3-node cluster (1 worker x 2 threads each), etcd in the root
namespace. The client runs inside host 0 and asks node 0 (the DT) over its own address: the
DT's answer to it crosses no shaped link, so what a batch waits for is the owners' links to
the DT, the only traffic peer_compression touches (a client behind the DT's own link would
wait for that link whatever the peers do).

Payloads, `--objects` objects of 256 KiB each, all in one streaming GetBatch (two thirds of
them owned by the peers): text (the Python standard library's sources), audio (16-bit PCM
mono: tones and noise, as uncompressed .wav data), random (os.urandom, like compressed
media). Modes: never, lz4, snappy, auto (peer_link_mbit set to the rate), changed at run
time; per round every mode once, in a rotating order. The figure is MB/s of batch at the
client, median of the rounds, and each mode's ratio to never. bench/RESULTS-cluster.md,
"Peer-stream compression, built", records a run.
"""
import argparse
import glob
import json
import math
import os
import random
import shutil
import statistics
import struct
import subprocess
import sys
import sysconfig
import tempfile
import time

import requests

from bench.bench_cluster import _create, _put_local
from bench.netns import ROOT_ADDR, Hosts, available
from getbatch.cluster.smap import NodeInfo, Smap
from tests.cluster.nodes import EtcdServer, _node_id
from tests.support.nodes import Node, serve_argv

PORT = 51080
SIZE = 256 << 10
MODES = ("never", "lz4", "snappy", "auto")


def text_payload(n):
    files = sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "**", "*.py"),
                             recursive=True))
    blob = bytearray()
    for f in files:
        if len(blob) >= n * SIZE:
            break
        with open(f, "rb") as fh:
            blob += fh.read()
    return [bytes(blob[i * SIZE:(i + 1) * SIZE]) for i in range(n)]


def audio_payload(n):
    rng = random.Random(7)
    out = []
    for i in range(n):
        f1, f2 = rng.uniform(100, 900), rng.uniform(1000, 3000)
        samples = (int(8000 * math.sin(2 * math.pi * f1 * t / 16000)
                       + 3000 * math.sin(2 * math.pi * f2 * t / 16000)
                       + rng.gauss(0, 600)) for t in range(SIZE // 2))
        out.append(struct.pack(f"<{SIZE // 2}h", *samples))
    return out


PAYLOADS = {"text": text_payload, "audio": audio_payload,
            "random": lambda n: [os.urandom(SIZE) for _ in range(n)]}


def client(url, bucket, names, rounds):
    """Run inside host 0: `rounds` batches of `names`; prints the seconds of each as JSON."""
    body = {"in": [{"objname": n} for n in names], "strm": True}
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        r = requests.get(f"{url}/v1/ml/moss/{bucket}", json=body, stream=True, timeout=600)
        r.raise_for_status()
        got = sum(len(c) for c in r.iter_content(1 << 20))
        out.append(time.perf_counter() - t0)
        assert got >= len(names) * SIZE
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rates", default="100mbit,1gbit")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--objects", type=int, default=96)
    p.add_argument("--client", nargs=4, metavar=("URL", "BUCKET", "NAMES", "ROUNDS"),
                   help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.client:
        url, bucket, names, rounds = args.client
        return client(url, bucket, names.split(","), int(rounds))
    ok, why = available()
    if not ok:
        sys.exit(f"bench_peer_compress_netns: {why}")
    root = tempfile.mkdtemp(prefix="bench-pzip-")
    sets = {kind: {f"{kind}{i:03d}": blob for i, blob in enumerate(make(args.objects))}
            for kind, make in PAYLOADS.items()}
    results = {}
    for rate in args.rates.split(","):
        with Hosts(3, rate, prefix="gbz") as hosts:
            etcd = EtcdServer(f"{root}/etcd-{rate}", host=ROOT_ADDR)
            nodes = []
            try:
                for i in range(3):
                    d = f"{root}/{rate}/node{i}"
                    os.makedirs(d, exist_ok=True)
                    addr = hosts.addrs[i]
                    argv = (["ip", "netns", "exec", hosts.names[i]] + serve_argv(1, 2)
                            + ["--host", addr, "--etcd", etcd.url,
                               "--advertise", f"http://{addr}:{PORT}"])
                    node = Node(f"{d}/data", f"{d}/server.log", argv, port=PORT, wait=False)
                    node.url = f"http://{addr}:{PORT}"
                    nodes.append(node)
                for n in nodes:
                    n._wait_ready()
                    n.id = _node_id(n)
                deadline = time.monotonic() + 30
                while not all(len(requests.get(n.url + "/v1/daemon", params={"what": "smap"},
                                               timeout=5).json()["tmap"]) == 3 for n in nodes):
                    assert time.monotonic() < deadline, "the nodes did not see each other"
                    time.sleep(0.2)
                smap = Smap(1, [NodeInfo(n.id, n.url) for n in nodes], nodes[0].id)
                by_id = {n.id: n for n in nodes}
                _create(nodes[0].url, sets)
                for bucket, objs in sets.items():
                    for name, data in objs.items():
                        _put_local(by_id[smap.owner("ais", bucket, name).id], bucket, name, data)
                mbit = int(float(rate.rstrip("mgbit")) * (1000 if rate.endswith("gbit") else 1))
                for kind, objs in sets.items():
                    names = ",".join(sorted(objs))
                    mb = len(objs) * SIZE / 1e6
                    times = {m: [] for m in MODES}
                    for rnd in range(args.rounds):
                        order = MODES[rnd % 4:] + MODES[:rnd % 4]
                        for mode in order:
                            requests.put(f"{nodes[0].url}/v1/config", timeout=10, json={
                                "action": "set-config", "value": {
                                    "peer_compression": mode,
                                    "peer_link_mbit": mbit}}).raise_for_status()
                            time.sleep(1.0)   # the change reaches every node through etcd
                            proc = hosts.popen(0, [sys.executable, __file__, "--client",
                                                   nodes[0].url, kind, names, "1"],
                                               stdout=subprocess.PIPE)
                            secs = json.loads(proc.communicate(timeout=900)[0])[0]
                            times[mode].append(secs)
                            print(f"{rate} {kind} {mode}: {mb / secs:.1f} MB/s", flush=True)
                    med = {m: statistics.median(mb / t for t in times[m]) for m in MODES}
                    results[f"{rate} {kind}"] = med
            finally:
                for n in nodes:
                    n.stop()
                etcd.stop()
    shutil.rmtree(root, ignore_errors=True)
    print("\nMB/s of batch at the client (median), and the ratio to never:")
    for key, med in results.items():
        print(f"  {key:16s} " + "  ".join(f"{m} {med[m]:6.1f} ({med[m] / med['never']:.2f}x)"
                                          for m in MODES))


if __name__ == "__main__":
    main()
