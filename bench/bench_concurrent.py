"""Many small batches at once (the DataLoader case) and single-object GETs, each beside its
baseline measured in the same run.

    python -m pytest bench/bench_concurrent.py -s --benchmark-only     # ~3 minutes

- S1, concurrent small batches: wrk -t2 -c32 against `getbatch serve` with its default
  settings, every request a GetBatch of 64 random 16 KiB objects (bench/moss_batches.lua
  cycles through 1,000 pregenerated bodies), against nginx serving the same 10,000 files one
  GET per item to 32 keep-alive connections (bench/paths.lua). Figure: items/s.
- S2, one 4 KiB object per request: `GET /v1/objects/f4k/<name>` cycling through the 10,000
  objects against `/v1/health` of the same node, wrk -t2 -c16. Figure: req/s.

The two sides of a figure run alternately, ROUNDS times each (the order flips every round),
so the load of whatever else runs on the machine falls on both; every round prints its own
ratio. Each run also records the share of the machine's CPU taken by processes other than
the servers and wrk ("foreign"), and the CPU the server and wrk used together, so a row can
be read as a throughput ratio and as a ratio of items per CPU-second ("cpu ratio"), which
moves far less with the foreign load. BENCH_NODES=2x2,2x8 adds nodes with those workers x
threads to S1 (for tuning; "default" is always there).
"""
import io
import json
import os
import random
import re
import resource
import socket
import statistics
import subprocess
import sys
import tarfile

import pytest

from bench_server import (DATA, HERE, N, NODE_DIR, OBJS, _flat, _once, _own_ticks,
                          _settle, _tree_ticks, _warm)
from bench_server import nginx  # noqa: F401  (the fixture)
from tests.support.nodes import Node

from getbatch.archive import backend
from getbatch.config import Config

ROUNDS = int(os.environ.get("BENCH_ROUNDS", 7))
SECONDS = int(os.environ.get("BENCH_SECONDS", 6))
ITEMS = 64                # objects per GetBatch
BODIES = 1000             # pregenerated GetBatch bodies
CONNS_BATCH, CONNS_GET = 32, 16
RUNS = {}                 # figure -> list of per-round dicts


# ---- data ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def data():
    os.makedirs(DATA, exist_ok=True)
    _once("f4k", lambda: _flat("f4k", 4096))
    _once("f16k", lambda: _flat("f16k", 16 << 10))
    names = [f"{i:05d}.bin" for i in range(N)]
    rnd = random.Random(64)
    bodies = os.path.join(DATA, f"moss{ITEMS}.bodies")
    with open(bodies, "w") as f:
        for _ in range(BODIES):
            entries = [{"objname": n} for n in rnd.sample(names, ITEMS)]
            f.write(json.dumps({"in": entries, "mime": ".tar", "strm": True}, separators=(",", ":")) + "\n")
    shuffled = names[:]
    random.Random(1).shuffle(shuffled)
    paths = {}
    for key, prefix in (("f16k", "/f16k/"), ("obj4k", "/v1/objects/f4k/")):
        paths[key] = os.path.join(DATA, f"{key}.paths")
        with open(paths[key], "w") as f:
            f.write("".join(f"{prefix}{n}\n" for n in shuffled))
    _warm(os.path.join(OBJS, b, n) for b in ("f4k", "f16k") for n in names)
    return {"bodies": bodies, "paths": paths}


# ---- servers ---------------------------------------------------------------------------

def _node_specs():
    specs = {"default": (Config().workers, Config().threads)}
    for spec in filter(None, os.environ.get("BENCH_NODES", "").split(",")):
        w, t = (int(x) for x in spec.split("x"))
        specs[spec] = (w, t)
    return specs


def _argv(workers, threads):
    return [sys.executable, "-m", "getbatch.cli", "serve", "--port", "{port}", "--data-dir", "{data}",
            "--workers", str(workers), "--threads", str(threads)]


@pytest.fixture(scope="module")
def nodes(data, tmp_path_factory):
    started = {}
    try:
        for name, (w, t) in _node_specs().items():
            d = tmp_path_factory.mktemp(f"node-{name}")
            started[name] = node = Node(NODE_DIR, d / "server.log", _argv(w, t))
            node.shape = f"{w}x{t}"
            _settle(node.proc.pid, w)
        yield started
    finally:
        for n in started.values():
            n.stop()


@pytest.fixture(scope="module")
def nginx_ticks(nginx):
    """CPU ticks of nginx's master and workers (the processes holding its listening socket)."""
    port = nginx.rpartition(":")[2]
    out = subprocess.run(["ss", "-ltnpH", f"( sport = :{port} )"], capture_output=True, text=True).stdout
    pids = {int(p) for p in re.findall(r"pid=(\d+)", out)}
    assert pids, out
    return lambda: sum(_own_ticks(p) for p in pids)


# ---- measuring -------------------------------------------------------------------------

def _machine_ticks():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4], sum(v)      # busy, all (idle = v[3], iowait = v[4])


def wrk_run(url, conns, server_ticks, script=None, args=()):
    """One wrk run: {rate, foreign, cpu}. foreign: share of the machine's CPU used by other
    processes; cpu: cores used by the server tree and wrk together."""
    cmd = ["wrk", "-t2", f"-c{conns}", f"-d{SECONDS}s"]
    if script:
        cmd += ["-s", os.path.join(HERE, script)]
    cmd += [url] + (["--", *args] if args else [])
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0, all0 = _machine_ticks()
    srv0 = server_ticks()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=SECONDS + 30).stdout
    srv1 = server_ticks()
    busy1, all1 = _machine_ticks()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert "Non-2xx" not in out and "Socket errors" not in out, out
    hz = os.sysconf("SC_CLK_TCK")
    ncpu = os.cpu_count()
    wrk_ticks = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) * hz
    elapsed = (all1 - all0) / ncpu            # ticks of one CPU
    ours = (srv1 - srv0) + wrk_ticks
    return {"rate": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "foreign": max(0.0, (busy1 - busy0) - ours) / max(1, all1 - all0),
            "cpu": ours / max(1, elapsed)}


def paired(benchmark, figure, base_name, base_run, ours):
    """ROUNDS rounds of (baseline, each of ours), the order flipped every round."""
    rounds = []

    def one_round():
        runs = [(base_name, base_run)] + list(ours.items())
        if len(rounds) % 2:
            runs.reverse()
        rounds.append({name: fn() for name, fn in runs})

    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)
    RUNS[figure] = (base_name, rounds)


# ---- benchmarks ------------------------------------------------------------------------

def check_batches(data, nodes):
    """What S1 requests get: a TAR of the 64 objects named, in order, with their bytes."""
    with open(data["bodies"]) as f:
        body = f.readline().strip()
    names = [e["objname"] for e in json.loads(body)["in"]]
    for node in nodes.values():
        got = _fetch_tar(node.port, "/v1/ml/moss/f16k", body.encode())
        with tarfile.open(fileobj=io.BytesIO(got)) as tf:
            members = tf.getmembers()
            assert [m.name for m in members] == [f"f16k/{n}" for n in names]
            for m, n in zip(members, names):
                with open(os.path.join(OBJS, "f16k", n), "rb") as f:
                    assert tf.extractfile(m).read() == f.read()


def _fetch_tar(port, path, body):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET %s HTTP/1.0\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                  % (path.encode(), len(body), body))
        chunks = []
        while chunk := s.recv(1 << 20):
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200"), head
    return payload


def test_s1_small_batches(benchmark, data, nodes, nginx, nginx_ticks):
    check_batches(data, nodes)
    base = lambda: wrk_run(nginx, CONNS_BATCH, nginx_ticks, "paths.lua", [data["paths"]["f16k"]])  # noqa: E731
    ours = {}
    for name, node in nodes.items():
        url = node.url + "/v1/ml/moss/f16k"
        ticks = (lambda pid=node.proc.pid: _tree_ticks(pid))
        ours[f"getbatch {name} ({node.shape})"] = (
            lambda url=url, ticks=ticks: _scaled(wrk_run(url, CONNS_BATCH, ticks, "moss_batches.lua",
                                                         [data["bodies"], "/v1/ml/moss/f16k"]), ITEMS))
    paired(benchmark, "S1 64 x 16 KiB per GetBatch, 32 conns (items/s)", "nginx", base, ours)


def _scaled(run, items):
    run["rate"] *= items
    return run


def test_s2_single_get(benchmark, data, nodes):
    node = nodes["default"]
    ticks = (lambda: _tree_ticks(node.proc.pid))
    base = lambda: wrk_run(node.url + "/v1/health", CONNS_GET, ticks)  # noqa: E731
    ours = {"GET 4 KiB object": lambda: wrk_run(node.url, CONNS_GET, ticks, "paths.lua", [data["paths"]["obj4k"]])}
    paired(benchmark, f"S2 one object per request, {CONNS_GET} conns, default node (req/s)",
           "/v1/health", base, ours)


# ---- summary ---------------------------------------------------------------------------

def _k(v):
    return f"{v / 1e3:.1f}K"


@pytest.fixture(scope="module", autouse=True)
def summary():
    yield
    if not RUNS:
        return
    lines = [f"\nbackend {backend()}, {ROUNDS} rounds of {SECONDS} s per side, cores {os.cpu_count()}"]
    for figure, (base_name, rounds) in RUNS.items():
        lines.append(f"\n{figure}")
        names = [n for n in rounds[0] if n != base_name]
        for i, r in enumerate(rounds):
            b = r[base_name]
            cells = [f"{base_name} {_k(b['rate'])} (foreign {b['foreign']:.2f})"]
            for n in names:
                o = r[n]
                cells.append(f"{n} {_k(o['rate'])} = {o['rate'] / b['rate']:.2f}x (foreign {o['foreign']:.2f})")
            lines.append(f"  round {i}: " + " | ".join(cells))
        med_b = statistics.median(r[base_name]["rate"] for r in rounds)
        lines.append(f"  median {base_name}: {_k(med_b)}; median foreign load "
                     f"{statistics.median(r[base_name]['foreign'] for r in rounds):.2f}")
        for n in names:
            ratios = sorted(r[n]["rate"] / r[base_name]["rate"] for r in rounds)
            cpu_ratios = [(r[n]["rate"] / r[n]["cpu"]) / (r[base_name]["rate"] / r[base_name]["cpu"]) for r in rounds]
            lines.append(f"  {n}: median {_k(statistics.median(r[n]['rate'] for r in rounds))}, "
                         f"ratio median {statistics.median(ratios):.2f}x (min {ratios[0]:.2f}, max {ratios[-1]:.2f}), "
                         f"cpu ratio median {statistics.median(cpu_ratios):.2f}x, foreign median "
                         f"{statistics.median(r[n]['foreign'] for r in rounds):.2f}")
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(DATA, "results-concurrent.txt"), "w") as f:
        f.write(text + "\n")
