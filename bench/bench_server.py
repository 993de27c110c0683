"""End-to-end server benchmarks T1-T4 and T9 (reference/perf-anchors.md) with their baselines.

Run from the repo root (about 4.5 minutes on 2 cores, plus about a minute the first time
to write the data):

    python -m pytest bench/bench_server.py -s --benchmark-only

Servers, all on free loopback ports over one data dir (bench/.data/server/node, written once):
- "zc": `getbatch serve`, 2 workers x 4 threads, the zero-copy GetBatch worker;
- "stock": the same app under gunicorn's stock gthread worker (bench/nodes.py);
- "naive": a pure-Python TAR generator under falcon + gunicorn gthread (bench/naive_app.py);
- nginx serving the same files, driven by wrk cycling through the 10,000 paths.
Each GetBatch goes over a fresh connection from this process, which discards the body with
recv_into into a 1 MiB buffer. Every figure is the median of ROUNDS runs (after warm-up
rounds that also warm the page cache and the shard indexes of both workers). The last line
of output is a table of medians and ratios against the anchors and targets.
"""
import io
import json
import os
import random
import re
import socket
import statistics
import string
import subprocess
import sys
import tarfile
import time

import pytest

from tests.support.nodes import Node, free_port, make_client, serve_argv

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, ".data", "server")
NODE_DIR = os.path.join(DATA, "node")     # the data dir every server uses
OBJS = os.path.join(NODE_DIR, "ais")       # <bucket>/<object>; also nginx's root
N = 10_000
BIG = int(os.environ.get("BENCH_T3_BYTES", 1 << 30))
N_SHARDS, N_MEMBERS = 100, 1000
ROUNDS = 5
WARMUP = 2          # two workers: each gets a chance to warm up
SDK_SAMPLE = 1000
WRK_SECONDS = 8
MiB = 1 << 20

RESULTS = {}        # key -> (median value, unit)
RSS = {}            # case -> (VmHWM MiB when idle, VmHWM MiB after the batches)


# ---- data ------------------------------------------------------------------------------

def _once(tag, make):
    """Run make() unless a marker says it completed before (so an interrupted run redoes it)."""
    marker = os.path.join(DATA, f".done-{tag}")
    if not os.path.exists(marker):
        make()
        open(marker, "w").close()


def _flat(bucket, size):
    d = os.path.join(OBJS, bucket)
    os.makedirs(d, exist_ok=True)
    for i in range(N):
        with open(os.path.join(d, f"{i:05d}.bin"), "wb") as f:
            f.write(os.urandom(size))


def _big(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        left = BIG
        while left:
            n = min(left, 16 * MiB)
            f.write(os.urandom(n))
            left -= n


def _shards():
    d = os.path.join(OBJS, "shards")
    os.makedirs(d, exist_ok=True)
    rnd = random.Random(3)
    pool = os.urandom(2 * MiB)
    sizes = {}
    for s in range(N_SHARDS):
        with tarfile.open(os.path.join(d, f"shard-{s:03d}.tar"), "w", format=tarfile.USTAR_FORMAT) as tf:
            for i in range(N_MEMBERS):
                name = f"sample_{s:03d}_{i:04d}.txt"
                size = rnd.randint(8192, 12288)
                at = rnd.randrange(len(pool) - size)
                ti = tarfile.TarInfo(name)
                ti.size = size
                tf.addfile(ti, io.BytesIO(pool[at:at + size]))
                sizes[name] = size
    with open(os.path.join(DATA, "shards.json"), "w") as f:
        json.dump(sizes, f)


def _warm(paths):
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while f.read(16 * MiB):
                pass


def _tar_len(sizes):
    """Length of the output TAR: names here are short, so one 512-byte header each."""
    return sum(512 + s + (-s % 512) for s in sizes) + 1024


@pytest.fixture(scope="module")
def data():
    os.makedirs(DATA, exist_ok=True)
    _once("f4k", lambda: _flat("f4k", 4096))
    _once("f64k", lambda: _flat("f64k", 64 << 10))
    big = f"big-{BIG}.bin"
    _once(big, lambda: _big(os.path.join(OBJS, "big", big)))
    _once("shards", _shards)

    def tiny():
        os.makedirs(os.path.join(OBJS, "tiny"), exist_ok=True)
        with open(os.path.join(OBJS, "tiny", "t.bin"), "wb") as f:
            f.write(os.urandom(128))
    _once("tiny", tiny)

    names = [f"{i:05d}.bin" for i in range(N)]
    random.Random(1).shuffle(names)
    for bucket in ("f4k", "f64k"):
        with open(os.path.join(DATA, f"{bucket}.paths"), "w") as f:
            f.write("".join(f"/{bucket}/{n}\n" for n in names))
    with open(os.path.join(DATA, "shards.json")) as f:
        member_sizes = json.load(f)
    rnd = random.Random(7)
    picks = []
    for _ in range(N):
        s, i = rnd.randrange(N_SHARDS), rnd.randrange(N_MEMBERS)
        picks.append((f"shard-{s:03d}.tar", f"sample_{s:03d}_{i:04d}.txt"))

    _warm(os.path.join(OBJS, b, n) for b in ("f4k", "f64k") for n in names)
    _warm(os.path.join(OBJS, "shards", f"shard-{s:03d}.tar") for s in range(N_SHARDS))
    _warm([os.path.join(OBJS, "big", big)])
    return {"names": names, "big": big, "picks": picks, "member_sizes": member_sizes}


def moss_body(entries, strm=True):
    return json.dumps({"in": entries, "mime": ".tar", "strm": strm}).encode()


def scenario(data, sid):
    """(bucket, request body, expected body length, items, bytes of object data)."""
    if sid in ("T1", "T2"):
        bucket, size = ("f4k", 4096) if sid == "T1" else ("f64k", 64 << 10)
        entries = [{"objname": n} for n in data["names"]]
        return bucket, moss_body(entries), _tar_len([size] * N), N, size * N
    if sid == "T3":
        return "big", moss_body([{"objname": data["big"]}]), _tar_len([BIG]), 1, BIG
    sizes = [data["member_sizes"][m] for _, m in data["picks"]]
    entries = [{"objname": s, "archpath": m} for s, m in data["picks"]]
    return "shards", moss_body(entries), _tar_len(sizes), N, sum(sizes)


# ---- servers ---------------------------------------------------------------------------

NODES_PY = os.path.join(HERE, "nodes.py")
ARGV = {
    "zc": serve_argv(workers=2, threads=4),
    "stock": [sys.executable, NODES_PY, "--app", "getbatch.server.wsgi:app", "--port", "{port}",
              "--data-dir", "{data}", "--worker-class", "gthread"],
    # nodes.py's directory is on its sys.path, so naive_app imports by module name
    "naive": [sys.executable, NODES_PY, "--app", "naive_app:app", "--port", "{port}",
              "--data-dir", "{data}", "--worker-class", "gthread"],
}


def start(kind, tmp_path_factory):
    """A node whose workers have all booted: the health check answers as soon as one
    worker is up, and workers still importing would steal CPU from the first figures."""
    d = tmp_path_factory.mktemp(kind)
    node = Node(NODE_DIR, d / "server.log", ARGV[kind])
    _settle(node.proc.pid, 2)
    return node


@pytest.fixture(scope="module")
def servers(data, tmp_path_factory):
    nodes = {}
    try:
        for kind in ARGV:
            nodes[kind] = start(kind, tmp_path_factory)
        yield nodes
    finally:
        for n in nodes.values():
            n.stop()


@pytest.fixture(scope="module")
def nginx(data, tmp_path_factory):
    prefix = tmp_path_factory.mktemp("nginx")
    os.mkdir(prefix / "tmp")
    port = free_port()
    with open(os.path.join(HERE, "nginx.conf.in")) as f:
        conf = string.Template(f.read()).substitute(prefix=prefix, root=OBJS, port=port)
    (prefix / "nginx.conf").write_text(conf)
    log = open(prefix / "stderr.log", "wb")
    # its own session, as the getbatch nodes have (tests/support/nodes.py): with the kernel's
    # autogroup scheduling every session gets an equal CPU share under load, and nginx left
    # in the benchmark's session would share one with wrk while the nodes get their own
    proc = subprocess.Popen(["nginx", "-p", str(prefix), "-e", str(prefix / "error.log"),
                             "-c", str(prefix / "nginx.conf")], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((prefix / "stderr.log").read_text())
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()


# ---- clients ---------------------------------------------------------------------------

_BUF = bytearray(MiB)


def get_batch(port, path, body):
    """One GET with a body over a fresh connection; returns the body length received.

    HTTP/1.0, so every server (the naive one sends no Content-Length) ends the body by
    closing the connection and no chunked decoding is needed on the receiving side."""
    mv = memoryview(_BUF)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body))
        head = b""
        while b"\r\n\r\n" not in head:
            n = s.recv_into(mv)
            if not n:
                raise RuntimeError(f"connection closed in the response head: {head[:500]!r}")
            head += _BUF[:n]
        if not head.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200")):
            raise RuntimeError(head[:2000].decode("latin-1"))
        total = len(head) - head.index(b"\r\n\r\n") - 4
        while n := s.recv_into(mv):
            total += n
    return total


_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(url, conns, threads=2, script=None, args=()):
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{WRK_SECONDS}s", "--latency"]
    if script:
        cmd += ["-s", os.path.join(HERE, script)]
    cmd += [url, "--", *args] if args else [url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=WRK_SECONDS + 30).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    assert not non2xx, out
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)\b", out)
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), \
        float(p50.group(1)) * _UNIT_MS[p50.group(2)]


def wrk_bench(benchmark, key, *a, **kw):
    runs = []
    benchmark.pedantic(lambda: runs.append(wrk(*a, **kw)), rounds=ROUNDS, iterations=1)
    RESULTS[key] = (statistics.median(r[0] for r in runs), "req/s")
    RESULTS[key + " p50"] = (statistics.median(r[1] for r in runs), "ms")


# ---- benchmarks ------------------------------------------------------------------------

@pytest.mark.parametrize("sid,kind", [(s, k) for s in ("T1", "T2", "T3") for k in ("zc", "stock", "naive")]
                         + [("T4", "zc"), ("T4", "stock")])
def test_batch(benchmark, data, servers, sid, kind):
    bucket, body, expect, items, nbytes = scenario(data, sid)
    port = servers[kind].port

    def one():
        got = get_batch(port, f"/v1/ml/moss/{bucket}", body)
        assert got == expect, (got, expect)

    benchmark.pedantic(one, rounds=ROUNDS, iterations=1, warmup_rounds=WARMUP)
    t = benchmark.stats.stats.median
    if sid == "T3":
        RESULTS[f"{sid} {kind}"] = (nbytes / t / 1e9, "GB/s")
    else:
        RESULTS[f"{sid} {kind}"] = (items / t, "files/s" if sid != "T4" else "members/s")


@pytest.mark.parametrize("sid", ["T1", "T2"])
def test_sdk_individual_gets(benchmark, data, servers, sid):
    """The aistore SDK fetching objects one GET at a time: a SDK_SAMPLE-object sample,
    the rate extrapolated to the whole 10,000."""
    bucket = "f4k" if sid == "T1" else "f64k"
    b = make_client(servers["zc"].url).bucket(bucket)
    sample = data["names"][:SDK_SAMPLE]

    def run():
        for n in sample:
            b.object(n).get_reader().read_all()

    benchmark.pedantic(run, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    RESULTS[f"{sid} sdk"] = (SDK_SAMPLE / benchmark.stats.stats.median, "files/s")


@pytest.mark.parametrize("sid", ["T1", "T2"])
def test_nginx(benchmark, data, nginx, sid):
    bucket = "f4k" if sid == "T1" else "f64k"
    wrk_bench(benchmark, f"{sid} nginx", nginx, 32, script="paths.lua",
              args=[os.path.join(DATA, f"{bucket}.paths")])


@pytest.mark.parametrize("kind,what", [("zc", "moss"), ("zc", "hello"), ("stock", "moss")])
def test_one_item(benchmark, data, servers, kind, what):
    url = servers[kind].url
    if what == "hello":
        wrk_bench(benchmark, f"T9 {kind} hello", url + "/v1/health", 16)
    else:
        body = moss_body([{"objname": "t.bin"}]).decode()
        wrk_bench(benchmark, f"T9 {kind}", url + "/v1/ml/moss/tiny", 16,
                  script="moss_one.lua", args=[body])


def _workers(master):
    """PIDs of the gunicorn workers (the master's children), once both are up."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(f"/proc/{master}/task/{master}/children") as f:
            pids = [int(p) for p in f.read().split()]
        if len(pids) == 2:
            return pids
        time.sleep(0.1)
    raise RuntimeError(f"expected 2 workers under {master}, got {pids}")


def _children(pid):
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            out += [int(p) for p in f.read().split()]
    return out


def _own_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except FileNotFoundError:
        return 0
    return int(fields[11]) + int(fields[12])     # utime + stime


def _tree_ticks(pid):
    """CPU time (clock ticks) of `pid` and all its descendants."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += _own_ticks(p)
        try:
            todo += _children(p)
        except FileNotFoundError:
            pass
    return total


def _settle(pid, workers):
    """Wait for every worker to boot and go idle (booting workers take CPU from the figures)."""
    deadline = time.monotonic() + 20
    while len(_children(pid)) < workers and time.monotonic() < deadline:
        time.sleep(0.1)
    ticks = _tree_ticks(pid)
    while time.monotonic() < deadline:
        time.sleep(0.3)
        ticks, before = _tree_ticks(pid), ticks
        if ticks == before:
            return


def _hwm_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return kb / 1024


@pytest.mark.parametrize("kind,strm,n", [("zc", True, 1000), ("zc", True, N), ("zc", False, N),
                                         ("stock", True, N), ("stock", False, N)])
def test_rss(benchmark, data, tmp_path_factory, kind, strm, n):
    """Peak RSS (VmHWM, max over the workers) of a fresh node after batches of n x 64 KiB."""
    node = start(kind, tmp_path_factory)
    try:
        pids = _workers(node.proc.pid)
        idle = max(_hwm_mib(p) for p in pids)
        body = moss_body([{"objname": x} for x in data["names"][:n]], strm)
        benchmark.pedantic(get_batch, args=(node.port, "/v1/ml/moss/f64k", body),
                           rounds=ROUNDS, iterations=1, warmup_rounds=1)
        peak = max(_hwm_mib(p) for p in pids)
    finally:
        node.stop()
    RSS[f"{kind} {'stream' if strm else 'buffered'} {n} x 64 KiB"] = (idle, peak)


# ---- summary ---------------------------------------------------------------------------

# (key, target or anchor text, reference value(s) to divide by: another key or a number)
ROWS = [
    ("T1 zc", ">= 100K files/s", 100e3),
    ("T1 zc", ">= 15x SDK GETs", "T1 sdk"),
    ("T1 zc", ">= 1.3x nginx", "T1 nginx"),
    ("T1 zc", ">= 1.3x naive (4.9: 77K)", "T1 naive"),
    ("T1 zc", "vs stock gthread", "T1 stock"),
    ("T1 nginx", "anchor 2e.1: 59K", 59e3),
    ("T1 naive", "anchor 4.9: 77K", 77e3),
    ("T1 sdk", "anchor 2e.6 (http.client): 6.2K", 6.2e3),
    ("T1 stock", "stock gthread worker", None),
    ("T2 zc", ">= 32K files/s", 32e3),
    ("T2 zc", "~ nginx", "T2 nginx"),
    ("T2 zc", ">= 1.2x naive (4.10: 26.5K)", "T2 naive"),
    ("T2 zc", ">= 10x SDK GETs", "T2 sdk"),
    ("T2 zc", "vs stock gthread", "T2 stock"),
    ("T2 nginx", "anchor 2e.5: 32.3K", 32.3e3),
    ("T2 naive", "anchor 4.10: 26.5K", 26.5e3),
    ("T2 sdk", "anchor 2e.6 (http.client): 3.1K", 3.1e3),
    ("T2 stock", "stock gthread worker", None),
    ("T3 zc", ">= 2.5 GB/s", 2.5),
    ("T3 zc", "vs stock gthread", "T3 stock"),
    ("T3 zc", "vs naive", "T3 naive"),
    ("T3 stock", "stock gthread worker", None),
    ("T3 naive", "anchor 4.5 (file_wrapper): 2.21", 2.21),
    ("T4 zc", ">= 100K members/s", 100e3),
    ("T4 zc", "vs stock gthread", "T4 stock"),
    ("T4 stock", "stock gthread worker", None),
    ("T9 zc", ">= 5K req/s", 5e3),
    ("T9 zc", "vs hello (>= 0.5x)", "T9 zc hello"),
    ("T9 zc p50", "< 2 ms", 2.0),
    ("T9 stock", "stock gthread", None),
    ("T9 stock p50", "", None),
    ("T9 zc hello", "anchor 4.2 /hello gthread: 10.2K", 10.2e3),
    ("T9 zc hello p50", "", None),
]


def _fmt(v, unit):
    if unit in ("files/s", "members/s", "req/s"):
        return f"{v / 1e3:.1f}K {unit}"
    return f"{v:.2f} {unit}"


@pytest.fixture(scope="module", autouse=True)
def summary():
    yield
    if not RESULTS and not RSS:
        return
    lines = [f"{'figure':<18} {'median':>18}  {'compared with':<34} {'ratio':>7}"]
    for key, what, ref in ROWS:
        if key not in RESULTS:
            continue
        v, unit = RESULTS[key]
        if isinstance(ref, str):
            if ref not in RESULTS:
                continue
            ref = RESULTS[ref][0]
        ratio = f"{v / ref:.2f}x" if ref else ""
        lines.append(f"{key:<18} {_fmt(v, unit):>18}  {what:<34} {ratio:>7}")
    for case, (idle, peak) in RSS.items():
        lines.append(f"RSS {case:<30} peak {peak:6.1f} MiB (idle {idle:.1f} MiB), max over workers")
    print("\n\nmedians of", ROUNDS, "runs\n" + "\n".join(lines))
    with open(os.path.join(DATA, "results.json"), "w") as f:
        json.dump({"results": RESULTS, "rss": RSS}, f, indent=1)
