"""Cluster GetBatch with the nodes as separate hosts: network namespaces on shaped links.

    sudo PYTHONPATH=src:. python bench/bench_cluster_netns.py [--rates 1gbit,none]
        [--out FILE.json] [--skip-large]                   # about 10 minutes on 2 cores

Needs root, iproute2 (bench/netns.py) and strace (Debian packages iproute2, strace). Four
hosts (namespaces gbh0..gbh3, 10.77.0.10-13), each on its own veth link to a bridge in the
root namespace; both directions of every link shaped to the NIC rate (tc tbf), or not
shaped ("none"). Hosts 0-2 run a 3-node cluster (1 worker x 2 threads each, `--host
10.77.0.1x --advertise http://10.77.0.1x:51080`) with etcd in the root namespace on
10.77.0.1; host 3 runs one lone node with the same settings on the same kind of link. The
client (this process) is in the root namespace: its side of the bridge is not shaped, so
what limits it is the DT's (or the lone node's) link, as with a client on a faster network.
Every request lands on node 0 (the DT).

Figures, each the median of alternating rounds on a fresh connection, body discarded:
- C1: 10,000 x 4 KiB objects; 2,000 x 64 KiB objects; 10,000 x 4 KiB members of 100 .tar
  shards (as bench/bench_cluster.py);
- large: one 1 GiB object (owned by a peer, so it crosses two links in the cluster), and 64 x
  2 MiB objects; each with sendfile (sendfile_min 1 MiB, the default: the nodes' clients and
  peers are remote here) and with copies (sendfile_min above every item);
- CPU: each node worker's user+system seconds per batch (/proc/PID/stat), and this client's,
  the calibration of bench/cluster_model.py; written with the figures to --out as JSON.
One extra large-batch run per rate is traced (`strace -f -e trace=sendfile`) on the DT and a
peer, to show sendfile really carries the items of sendfile_min and more.
"""
import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import requests

from bench.bench_cluster import _create, _put_local, batch, dataset
from bench.netns import ROOT_ADDR, Hosts, available
from getbatch.cluster.smap import NodeInfo, Smap
from tests.cluster.nodes import EtcdServer, _node_id
from tests.support.nodes import Node, serve_argv

PORT = 51080
MiB = 1 << 20
ROUNDS = 5
LARGE_ROUNDS = 3
NO_SENDFILE = str(1 << 40)
TICK = os.sysconf("SC_CLK_TCK")


class Hosted:
    """The nodes: a cluster on hosts 0..2 and a lone node on host 3, (re)started together."""

    def __init__(self, hosts, root):
        self.hosts = hosts
        self.root = root
        self.etcd = EtcdServer(f"{root}/etcd", host=ROOT_ADDR)
        self.nodes = []
        self.lone = None

    def _start(self, i, etcd, env):
        d = f"{self.root}/{'node%d' % i if etcd else 'lone'}"
        os.makedirs(d, exist_ok=True)
        addr = self.hosts.addrs[i]
        argv = ["ip", "netns", "exec", self.hosts.names[i]] + serve_argv(1, 2) + ["--host", addr]
        if etcd:
            argv += ["--etcd", self.etcd.url, "--advertise", f"http://{addr}:{PORT}"]
        node = Node(f"{d}/data", f"{d}/server.log", argv, env=env, port=PORT, wait=False)
        node.url = f"http://{addr}:{PORT}"
        return node

    def start(self, env=None):
        self.nodes = [self._start(i, True, env) for i in range(3)]
        self.lone = self._start(3, False, env)
        for node in self.nodes + [self.lone]:
            node._wait_ready()
        for node in self.nodes:
            node.id = _node_id(node)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            views = [requests.get(n.url + "/v1/daemon", params={"what": "smap"}, timeout=5)
                     .json()["tmap"] for n in self.nodes]
            if all(len(v) == 3 for v in views):
                return
            time.sleep(0.2)
        raise RuntimeError("the 3 nodes did not see each other in 30 s")

    def stop(self):
        for node in self.nodes + ([self.lone] if self.lone else []):
            if node.proc.poll() is None:
                node.stop()
        self.nodes, self.lone = [], None

    def close(self):
        self.stop()
        self.etcd.stop()

    def smap(self):
        return Smap(1, [NodeInfo(n.id, n.url) for n in self.nodes], self.nodes[0].id)


def place(sets, hosted):
    """Each object into its HRW owner's data dir, and every object into the lone node's."""
    _create(hosted.nodes[0].url, sets)
    _create(hosted.lone.url, sets)
    smap = hosted.smap()
    by_id = {n.id: n for n in hosted.nodes}
    for bucket, objs in sets.items():
        for name, data in objs.items():
            _put_local(by_id[smap.owner("ais", bucket, name).id], bucket, name, data)
            _put_local(hosted.lone, bucket, name, data)


def large_sets(smap, peer_id):
    """The 1 GiB object, named so that a peer owns it, and 64 x 2 MiB objects."""
    name = next(f"big{i}" for i in range(1000) if smap.owner("ais", "big", f"big{i}").id == peer_id)
    block = os.urandom(16 * MiB)
    chunk = os.urandom(2 * MiB)
    sets = {"big": {name: block * 64},
            "l2m": {f"o{i:02d}": chunk[i:] + chunk[:i] for i in range(64)}}
    bodies = {"1 GiB object": ("big", [{"objname": name}]),
              "2 MiB x 64": ("l2m", [{"objname": n} for n in sets["l2m"]])}
    return sets, bodies


def worker_pid(node):
    with open(f"/proc/{node.proc.pid}/task/{node.proc.pid}/children") as f:
        return int(f.read().split()[0])


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def measure(bodies, hosted, rounds, out, tag):
    """Alternate the lone node and the cluster's DT `rounds` times per body; medians."""
    sides = {"1": [hosted.lone], "3": hosted.nodes}
    pids = {s: [worker_pid(n) for n in nodes] for s, nodes in sides.items()}
    for label, (bucket, entries) in bodies.items():
        times = {"1": [], "3": []}
        ttfb = {"1": [], "3": []}
        cpu = {s: [0.0] * len(p) for s, p in pids.items()}
        client = {s: 0.0 for s in sides}
        size = 0
        for s in sides:                                  # warm-up: page cache, connections
            batch(sides[s][0].url, bucket, entries)
        for r in range(rounds):
            for s in (("1", "3") if r % 2 == 0 else ("3", "1")):
                before = [cpu_seconds(p) for p in pids[s]]
                c0 = time.process_time()
                t, first, size = batch(sides[s][0].url, bucket, entries)
                client[s] += time.process_time() - c0
                after = [cpu_seconds(p) for p in pids[s]]
                cpu[s] = [c + a - b for c, a, b in zip(cpu[s], after, before)]
                times[s].append(t)
                ttfb[s].append(first)
        rec = {"items": len(entries), "bytes": size}
        for s in sides:
            t = statistics.median(times[s])
            rec[s] = {"seconds": t, "items_s": len(entries) / t, "mb_s": size / t / 1e6,
                      "ttfb": statistics.median(ttfb[s]),
                      "cpu_per_batch": [c / rounds for c in cpu[s]],
                      "client_cpu_per_batch": client[s] / rounds}
        rec["ratio"] = rec["1"]["seconds"] / rec["3"]["seconds"]
        out[f"{tag} | {label}"] = rec
        print(f"{tag:26} {label:26} 1 node {rec['1']['items_s']:9,.0f} items/s "
              f"{rec['1']['mb_s']:7.1f} MB/s | 3 nodes {rec['3']['items_s']:9,.0f} items/s "
              f"{rec['3']['mb_s']:7.1f} MB/s | {rec['ratio']:.2f}x | cpu/batch "
              f"1: {rec['1']['cpu_per_batch'][0]:.2f}s 3: "
              f"{'/'.join(f'{c:.2f}' for c in rec['3']['cpu_per_batch'])}s", flush=True)


def trace_sendfile(hosted, bucket, entries, root, tag):
    """Run one batch with strace on the DT and peer 1 workers; sendfile calls and bytes."""
    got = {}
    procs = []
    for who, node in (("DT", hosted.nodes[0]), ("peer", hosted.nodes[1])):
        pid = worker_pid(node)
        path = f"{root}/strace-{tag}-{who}.txt"
        tids = os.listdir(f"/proc/{pid}/task")
        procs.append((who, path, subprocess.Popen(
            ["strace", "-f", "-qq", "-e", "trace=sendfile", "-o", path]
            + [a for t in tids for a in ("-p", t)], stderr=subprocess.DEVNULL)))
    time.sleep(1.0)                                       # strace attached
    batch(hosted.nodes[0].url, bucket, entries)
    time.sleep(0.5)
    for who, path, p in procs:
        p.send_signal(signal.SIGINT)
        p.wait(timeout=10)
        calls = sizes = 0
        with open(path) as f:
            for line in f:
                m = re.search(r"sendfile\(.*\)\s+=\s+(\d+)", line)
                if m:
                    calls += 1
                    sizes += int(m.group(1))
        got[who] = {"calls": calls, "bytes": sizes}
    print(f"{tag:26} strace sendfile, one batch: " + ", ".join(
        f"{w} {g['calls']} calls {g['bytes'] / MiB:.0f} MiB" for w, g in got.items()), flush=True)
    return got


def _interrupt(*_):
    raise KeyboardInterrupt


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rates", default="1gbit,none", help="tc rates to run, comma-separated; "
                   "none: unshaped")
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    p.add_argument("--skip-large", action="store_true", help="C1 only")
    args = p.parse_args(argv)
    ok, why = available()
    if not ok:
        sys.exit(f"bench_cluster_netns: {why}")
    if not args.skip_large and shutil.which("strace") is None:
        sys.exit("bench_cluster_netns: needs `strace` (Debian package strace), or --skip-large")
    # SIGTERM unwinds like Ctrl-C, so the namespaces and nodes are always removed
    signal.signal(signal.SIGTERM, _interrupt)
    root = tempfile.mkdtemp(prefix="bench-cnet-")
    rates = [None if r == "none" else r for r in args.rates.split(",")]
    sets, bodies = dataset()
    out = {"rounds": ROUNDS, "large_rounds": LARGE_ROUNDS, "figures": {}, "strace": {}}
    with Hosts(4, rate=rates[0]) as hosts:
        hosted = Hosted(hosts, root)
        try:
            hosted.start()
            place(sets, hosted)
            big_sets, big_bodies = large_sets(hosted.smap(), hosted.nodes[1].id)
            if not args.skip_large:
                place(big_sets, hosted)
            for rate in rates:
                hosts.shape(rate)
                tag = f"link {rate or 'unshaped'}"
                measure(bodies, hosted, ROUNDS, out["figures"], tag)
                if args.skip_large:
                    continue
                measure(big_bodies, hosted, LARGE_ROUNDS, out["figures"], f"{tag}, sendfile")
                out["strace"][tag] = trace_sendfile(hosted, "l2m", big_bodies["2 MiB x 64"][1],
                                                    root, tag.replace(" ", "-"))
                hosted.stop()
                hosted.start(env={"GETBATCH_SENDFILE_MIN": NO_SENDFILE})
                measure(big_bodies, hosted, LARGE_ROUNDS, out["figures"], f"{tag}, copies")
                hosted.stop()
                hosted.start()
        finally:
            hosted.close()
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)
    print(f"logs and traces in {root}")


if __name__ == "__main__":
    sys.exit(main())
