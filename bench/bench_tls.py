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
falls on both; each round prints its own ratio, and the last lines are the medians.
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

from bench_server import DATA, N, NODE_DIR, OBJS, _flat, _once, _settle, _warm  # noqa: E402
from getbatch.cluster.devcerts import DevCA  # noqa: E402
from tests.server.conftest import Node  # noqa: E402

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
        for r in range(ROUNDS):
            order = list(sides) if r % 2 == 0 else list(sides)[::-1]
            row = {}
            for name in order:
                node, c = sides[name]
                secs, got = _t1(node.port, t1_body, c)
                row.setdefault("t1", {})[name] = N / secs
                row.setdefault("c", {})[name] = _wrk(node.url, bodies)
            for key, fig in zip(("t1", "c"), figures):
                for name, v in row[key].items():
                    figures[fig].setdefault(name, []).append(v)
            print(f"round {r + 1}: T1 plain {row['t1']['plain']:,.0f} tls {row['t1']['tls']:,.0f} "
                  f"({row['t1']['tls'] / row['t1']['plain']:.2f}x); C plain {row['c']['plain']:,.0f} "
                  f"tls {row['c']['tls']:,.0f} ({row['c']['tls'] / row['c']['plain']:.2f}x)",
                  flush=True)
    finally:
        plain.stop()
        tls.stop()
    print(f"\nmedians of {ROUNDS} rounds:")
    for fig, runs in figures.items():
        p, t = statistics.median(runs["plain"]), statistics.median(runs["tls"])
        ratios = sorted(b / a for a, b in zip(runs["plain"], runs["tls"]))
        print(f"  {fig}: plain {p:,.0f}, TLS {t:,.0f}: {t / p:.2f}x "
              f"(per-round ratios {ratios[0]:.2f}-{ratios[-1]:.2f}, median "
              f"{statistics.median(ratios):.2f})")


if __name__ == "__main__":
    main()
