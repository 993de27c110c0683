"""/v1/health latency of a node under hostile connections (docs/front-proxy.md).

    PYTHONPATH=. python bench/hostile_latency.py --idle 100 --slow 100 --stalled 100 --vanishing 5 [--short]

Starts `getbatch serve` (2 workers x 4 threads) on a free port, keeps the given numbers of
idle, slowloris and stalled-body connections open (replacing each one the node closes) and
opens `--vanishing` half-head-then-RST connections every 0.1 s, all from `--source`; then
probes /v1/health over a fresh connection every 0.2 s from 127.0.0.1 for `--seconds`.
`--short` sets header_timeout and body_timeout to 2 s.
"""
import argparse
import statistics
import tempfile
import time

import requests

from tests.support.nodes import Node, serve_argv
from tests.server.hostile import Hostile


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for kind in ("idle", "slow", "stalled", "vanishing"):
        p.add_argument(f"--{kind}", type=int, default=0)
    p.add_argument("--seconds", type=float, default=15)
    p.add_argument("--source", default="127.0.0.3", help="address the hostile connections come from")
    p.add_argument("--short", action="store_true", help="header_timeout and body_timeout of 2 s")
    a = p.parse_args()
    env = {"GETBATCH_HEADER_TIMEOUT": "2", "GETBATCH_BODY_TIMEOUT": "2"} if a.short else {}
    d = tempfile.mkdtemp()
    node = Node(f"{d}/data", f"{d}/server.log", serve_argv(), env=env)
    try:
        requests.post(f"{node.url}/v1/buckets/hostile?provider=ais", json={"action": "create-bck"})
        hostile = Hostile(node.port, idle=a.idle, slow=a.slow, stalled=a.stalled, vanishing=a.vanishing,
                          replace=True, source=a.source)
        hostile.start()
        time.sleep(1)
        latency, failed = [], 0
        end = time.monotonic() + a.seconds
        while time.monotonic() < end:
            t0 = time.monotonic()
            try:
                r = requests.get(node.url + "/v1/health", timeout=10, headers={"Connection": "close"})
                r.raise_for_status()
            except requests.RequestException:
                failed += 1
            latency.append(time.monotonic() - t0)
            time.sleep(0.2)
        hostile.stop()
    finally:
        node.stop()
    print(f"{len(latency)} probes, {failed} failed (10 s timeout): median "
          f"{statistics.median(latency) * 1000:.0f} ms, max {max(latency) * 1000:.0f} ms; "
          f"hostile connections opened {hostile.opened}, closed by the node "
          f"{ {k: len(v) for k, v in hostile.lifetimes.items()} }")


if __name__ == "__main__":
    main()
