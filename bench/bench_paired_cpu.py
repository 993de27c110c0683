"""Server CPU per GetBatch of two source trees side by side, paired: for a change that must not
cost speed (a refactor), on a machine too loaded for throughput figures to mean much.

    PYTHONPATH=src:. python bench/bench_paired_cpu.py --base ../old-checkout --new . [--mode S1]

Both trees run `getbatch serve` (1 worker x 2 threads, logging at WARNING) on the same data,
bench_server.py's (bench/.data/server/node: run it once first). Each round measures the base
and the new node in turn (the order flips every round) and charges each node's processes' CPU
time (utime + stime, from /proc) to the batches it served. Modes: T1, one batch of 10,000 x 4 KiB
objects (5 a measurement); S1, a batch of 64 random 16 KiB objects (300 a measurement, each on a
fresh connection). Prints each round and the median of the per-round ratios new/base, of CPU
per batch and of wall time per batch.
"""
import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

from bench_server import NODE_DIR, _tree_ticks

_BUF = bytearray(1 << 20)


def _bodies(mode):
    """(path, request bodies, least body length expected)."""
    if mode == "T1":
        names = sorted(os.listdir(os.path.join(NODE_DIR, "ais", "f4k")))
        body = json.dumps({"in": [{"objname": n} for n in names], "mime": ".tar", "strm": True})
        return b"/v1/ml/moss/f4k", [body.encode()], len(names) * 4096
    names = sorted(os.listdir(os.path.join(NODE_DIR, "ais", "f16k")))
    rnd = random.Random(7)
    bodies = [json.dumps({"in": [{"objname": n} for n in rnd.sample(names, 64)], "mime": ".tar",
                          "strm": True}).encode() for _ in range(50)]
    return b"/v1/ml/moss/f16k", bodies, 64 * 16384


def _start(tree, port):
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.abspath(tree), "src"))
    proc = subprocess.Popen([sys.executable, "-m", "getbatch.cli", "serve", "--port", str(port),
                             "--data-dir", NODE_DIR, "--workers", "1", "--threads", "2",
                             "--log-level", "WARNING"], cwd=tree, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/health", timeout=1)
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"the node of {tree} did not start on port {port}")


def _batch(port, path, body):
    mv = memoryview(_BUF)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (path, len(body), body))
        total = 0
        while n := s.recv_into(mv):
            total += n
    return total


def _measure(proc, port, work, per):
    path, bodies, least = work
    t0, c0 = time.perf_counter(), _tree_ticks(proc.pid)
    for i in range(per):
        got = _batch(port, path, bodies[i % len(bodies)])
        assert got > least, f"a short answer: {got} bytes"
    cpu = (_tree_ticks(proc.pid) - c0) / os.sysconf("SC_CLK_TCK")
    return cpu / per, (time.perf_counter() - t0) / per


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="source tree before the change")
    p.add_argument("--new", required=True, help="source tree with the change")
    p.add_argument("--mode", choices=("T1", "S1"), default="T1")
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--port", type=int, default=18431, help="base's port; new's is the next")
    args = p.parse_args()
    work = _bodies(args.mode)
    per = 5 if args.mode == "T1" else 300
    ports = {"base": args.port, "new": args.port + 1}
    procs = {side: _start(getattr(args, side), ports[side]) for side in ports}
    try:
        for side in procs:   # warm-up: page cache, first-use costs
            _measure(procs[side], ports[side], work, per)
        rows = []
        for r in range(args.rounds):
            order = ("base", "new") if r % 2 == 0 else ("new", "base")
            got = {side: _measure(procs[side], ports[side], work, per) for side in order}
            rows.append(got)
            print(f"round {r}: base cpu {got['base'][0] * 1e3:.2f} ms wall {got['base'][1] * 1e3:.2f} ms"
                  f" | new cpu {got['new'][0] * 1e3:.2f} ms wall {got['new'][1] * 1e3:.2f} ms", flush=True)
        for i, what in ((0, "server CPU per batch"), (1, "wall per batch")):
            ratios = [g["new"][i] / g["base"][i] for g in rows]
            print(f"{args.mode} {what}: base {statistics.median(g['base'][i] for g in rows) * 1e3:.2f} ms,"
                  f" new {statistics.median(g['new'][i] for g in rows) * 1e3:.2f} ms, new/base median "
                  f"{statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")
    finally:
        for proc in procs.values():
            os.killpg(proc.pid, 15)
            proc.wait(30)


if __name__ == "__main__":
    main()
