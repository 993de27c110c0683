"""What TLS costs a node's GetBatch throughput: the same node with its defaults, plain and
serving HTTPS (tls_cert/tls_key, no client certificates), over the same data dir.

    python bench/bench_tls.py          # ~4 minutes; BENCH_ROUNDS (7), BENCH_SECONDS (6)

- T1-like: one GetBatch of 10,000 x 4 KiB objects (streaming TAR), over a fresh connection
  from this process, which reads the body into a 1 MiB buffer: files/s. The plain node sends it
  with the zero-copy emit loop; over TLS the body is encrypted in the worker.
- C-style (bench_concurrent's S1): wrk -t2 -c32 for BENCH_SECONDS, every request a GetBatch of
  64 random 16 KiB objects (moss_batches.lua over 1,000 pregenerated bodies): items/s. wrk
  keeps its connections, so handshakes are a small part of it.

The two nodes take turns, the order flipped every round, so whatever else loads the machine
falls on both; each round prints its own ratio, and the last lines are the medians. Beside
throughput, each figure is also counted per CPU-second of the server (its process tree), which
other load on the machine moves far less.
"""
import json
import os
import random
import re
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]

from bench_server import (DATA, N, NODE_DIR, OBJS, _flat, _once, _settle,  # noqa: E402
                          _tree_ticks, _warm)
from getbatch.cluster.devcerts import DevCA  # noqa: E402
from tests.support.nodes import Node  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", 7))
SECONDS = int(os.environ.get("BENCH_SECONDS", 6))
ITEMS, BODIES, CONNS = 64, 1000, 32


def _data():
    os.makedirs(DATA, exist_ok=True)
    _once("f4k", lambda: _flat("f4k", 4096))
    _once("f16k", lambda: _flat("f16k", 16 << 10))
    names = [f"{i:05d}.bin" for i in range(N)]
    bodies = os.path.join(DATA, f"moss{ITEMS}.bodies")
    rnd = random.Random(64)
    with open(bodies, "w") as f:
        for _ in range(BODIES):
            entries = [{"objname": n} for n in rnd.sample(names, ITEMS)]
            f.write(json.dumps({"in": entries, "mime": ".tar", "strm": True},
                               separators=(",", ":")) + "\n")
    _warm(os.path.join(OBJS, b, n) for b in ("f4k", "f16k") for n in names)
    t1 = json.dumps({"in": [{"objname": n} for n in names], "mime": ".tar", "strm": True}).encode()
    return bodies, t1


def _t1(port, body, ctx):
    """Seconds for one whole T1 batch, and the bytes of its answer."""
    buf = bytearray(1 << 20)
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as raw:
        s = ctx.wrap_socket(raw, server_hostname="127.0.0.1") if ctx else raw
        s.sendall(b"GET /v1/ml/moss/f4k HTTP/1.0\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
        got = 0
        while n := s.recv_into(buf):
            if not got:
                assert bytes(buf[:12]).startswith(b"HTTP/1."), bytes(buf[:80])
                assert b" 200 " in bytes(buf[:16]), bytes(buf[:200])
            got += n
    return time.perf_counter() - start, got


def _wrk(url, bodies):
    out = subprocess.run(["wrk", "-t2", f"-c{CONNS}", f"-d{SECONDS}s", "-s",
                          os.path.join(HERE, "moss_batches.lua"), url + "/v1/ml/moss/f16k",
                          "--", bodies, "/v1/ml/moss/f16k"],
                         capture_output=True, text=True, timeout=SECONDS + 60).stdout
    assert "Non-2xx" not in out and "Socket errors" not in out, out
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)) * ITEMS


def main():
    bodies, t1_body = _data()
    tmp = tempfile.mkdtemp(prefix="bench-tls-")
    ca = DevCA(os.path.join(tmp, "ca"))
    cert = ca.issue("node")
    ctx = ssl.create_default_context(cafile=ca.cert)
    argv = [sys.executable, "-m", "getbatch.cli", "serve", "--port", "{port}", "--data-dir",
            "{data}"]
    plain = Node(NODE_DIR, os.path.join(tmp, "plain.log"), argv)
    tls = Node(NODE_DIR, os.path.join(tmp, "tls.log"),
               argv + ["--tls-cert", cert.cert, "--tls-key", cert.key],
               http={"verify": ca.cert})
    sides = {"plain": (plain, None), "tls": (tls, ctx)}
    figures = {"T1 10K x 4 KiB, one batch (files/s)": {}, "C 64 x 16 KiB, 32 conns (items/s)": {}}
    try:
        for node, _ in sides.values():
            _settle(node.proc.pid, 2)
        for name, (node, c) in sides.items():   # warm both workers of each node
            for _ in range(3):
                _t1(node.port, t1_body, c)
        hz = os.sysconf("SC_CLK_TCK")
        for r in range(ROUNDS):
            order = list(sides) if r % 2 == 0 else list(sides)[::-1]
            row = {}
            for name in order:
                node, c = sides[name]
                ticks = _tree_ticks(node.proc.pid)
                secs, got = _t1(node.port, t1_body, c)
                cpu = (_tree_ticks(node.proc.pid) - ticks) / hz
                row[("t1", name)] = (N / secs, N / max(cpu, 1 / hz))
                ticks = _tree_ticks(node.proc.pid)
                rate = _wrk(node.url, bodies)
                cpu = (_tree_ticks(node.proc.pid) - ticks) / hz
                row[("c", name)] = (rate, rate * SECONDS / max(cpu, 1 / hz))
            for key, fig in zip(("t1", "c"), figures):
                for name in sides:
                    figures[fig].setdefault(name, []).append(row[(key, name)])
            print(f"round {r + 1}: " + "; ".join(
                f"{key} plain {row[(key, 'plain')][0]:,.0f} tls {row[(key, 'tls')][0]:,.0f} "
                f"({row[(key, 'tls')][0] / row[(key, 'plain')][0]:.2f}x, per server CPU-s "
                f"{row[(key, 'tls')][1] / row[(key, 'plain')][1]:.2f}x)" for key in ("t1", "c")),
                flush=True)
    finally:
        plain.stop()
        tls.stop()
    print(f"\nmedians of {ROUNDS} rounds:")
    for fig, runs in figures.items():
        for i, what in ((0, "per second"), (1, "per server CPU-second")):
            p = statistics.median(v[i] for v in runs["plain"])
            t = statistics.median(v[i] for v in runs["tls"])
            ratios = sorted(b[i] / a[i] for a, b in zip(runs["plain"], runs["tls"]))
            print(f"  {fig}, {what}: plain {p:,.0f}, TLS {t:,.0f}: {t / p:.2f}x (per-round "
                  f"ratios {ratios[0]:.2f}-{ratios[-1]:.2f}, median {statistics.median(ratios):.2f})")

if __name__ == "__main__":
    main()
