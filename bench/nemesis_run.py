"""A long seeded fault-injection run against a real etcd and real nodes, with the consistency
contract checked (tests/cluster/nemesis.py, checker.py): it prints the schedule as it goes,
then operations, faults injected by kind, and violations by kind.

    PYTHONPATH=src:. python bench/nemesis_run.py --seed 42 --duration 300

Exits 1 when it found a violation (the seed replays the same schedule).
"""
import argparse
import random
import sys
import tempfile

from tests.cluster.nemesis import FAULTS, trial
from tests.cluster.nodes import Cluster


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=None, help="default: a random one (printed)")
    p.add_argument("--duration", type=float, default=120, help="seconds of faults (default 120)")
    p.add_argument("--nodes", type=int, default=3, help="nodes at the start (default 3)")
    p.add_argument("--names", type=int, default=16, help="object names written (default 16)")
    p.add_argument("--threads", type=int, default=3, help="client threads (default 3)")
    p.add_argument("--faults", default=",".join(FAULTS),
                   help=f"kinds of fault, comma-separated (default {','.join(FAULTS)})")
    p.add_argument("--keep", action="store_true", help="keep the data dirs and logs")
    args = p.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    kinds = tuple(k for k in args.faults.split(",") if k)
    unknown = set(kinds) - set(FAULTS)
    if unknown:
        p.error(f"unknown fault kind {sorted(unknown)[0]!r}: expecting some of {FAULTS}")
    with tempfile.TemporaryDirectory(prefix="nemesis-") as d:
        base = tempfile.mkdtemp(prefix="nemesis-") if args.keep else d
        print(f"cluster data and logs: {base}", flush=True)
        with Cluster(base, n=args.nodes, env={"GETBATCH_MAX_WAIT": "3s"}) as c:
            report = trial(c, seed, args.duration, names=args.names, kinds=kinds,
                           threads=args.threads, out=lambda s: print(s, flush=True))
    for line in report.lines():
        print(line)
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
