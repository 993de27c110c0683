"""T1 and C1 of two source trees in one run: a change's before and after, side by side.

    PYTHONPATH=src:. python bench/bench_ab.py OTHER_SRC [ROUNDS]

OTHER_SRC is the `src` directory of another checkout (with its extensions built, e.g. a
`git worktree add --detach` of the commit before the change); this checkout's `src` is the
"after". Each side runs a lone node and a 3-node cluster (real etcd; 1 worker x 2 threads
each, as bench_cluster.py), all up at once; every round sends one batch to each of the four
in an order that rotates, so load from elsewhere on the machine falls on both sides alike.

- T1: one batch of 10,000 x 4 KiB objects from a lone node, items/s.
- C1: the same batch through node 0 of the cluster (about two thirds from its peers), and
  its ratio to the same side's lone node.

Figures are medians of ROUNDS (default 7) after a warm-up batch each; see bench/RESULTS-cluster.md.
"""
import os
import statistics
import sys
import tempfile

from bench.bench_cluster import batch, dataset, place_cluster, place_lone
from tests.cluster.nodes import Cluster
from tests.support.nodes import Node, serve_argv

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _servers(root, side, src):
    env = {"PYTHONPATH": f"{src}:{HERE}"}
    os.makedirs(f"{root}/{side}/lone", exist_ok=True)
    lone = Node(f"{root}/{side}/lone/data", f"{root}/{side}/lone/server.log", serve_argv(1, 2),
                env=env)
    return lone, Cluster(f"{root}/{side}/c", n=3, workers=1, threads=2, env=env)


def main():
    other = os.path.abspath(sys.argv[1])
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    root = tempfile.mkdtemp(prefix="bench-ab-")
    sets, bodies = dataset()
    sets = {"f4k": sets["f4k"]}
    bucket, entries = bodies["4KiB x 10K"]
    up = []
    try:
        for side, src in (("before", other), ("after", os.path.join(HERE, "src"))):
            lone, cluster = _servers(root, side, src)
            up += [lone, cluster]
            place_lone(sets, lone)
            place_cluster(sets, cluster)
        targets = [("before", "T1", up[0].url), ("before", "C1", up[1].urls[0]),
                   ("after", "T1", up[2].url), ("after", "C1", up[3].urls[0])]
        times = {(s, f): [] for s, f, _ in targets}
        for _, _, url in targets:
            batch(url, bucket, entries)
        for r in range(rounds):
            for side, fig, url in targets[r % 4:] + targets[:r % 4]:
                times[side, fig].append(batch(url, bucket, entries)[0])
    finally:
        for s in up:
            s.stop() if isinstance(s, Node) else s.close()
    n = len(entries)
    print(f"{'side':8} {'T1 items/s':>12} {'C1 items/s':>12} {'C1 / T1':>8}   ({rounds} rounds)")
    for side in ("before", "after"):
        t1, c1 = (statistics.median(times[side, f]) for f in ("T1", "C1"))
        print(f"{side:8} {n / t1:>12,.0f} {n / c1:>12,.0f} {t1 / c1:>7.2f}x")


if __name__ == "__main__":
    sys.exit(main())
