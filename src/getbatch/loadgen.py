"""`getbatch bench`: a GetBatch load generator, in the spirit of `aisloader -get-batchsize`.

N client processes (one keep-alive connection each, so the client's GIL is not what limits)
ask a node or cluster for batches of `--batch-size` entries drawn at random from the objects
already in the bucket, in a mix of whole objects, files inside shards (listed with AIS's
ARCH_DIR flag) and names that do not exist (sent with `coer`, so they come back as `__404__/`
placeholders), for `--duration` seconds. Every response is read to its end and its entries
counted; a batch whose archive is short, cut or malformed is an error. A 429 is counted as
`busy` and asked again after its Retry-After, as the SDK does.

While it runs, one line on a terminal is redrawn twice a second (items/s, MB/s, batches,
latency percentiles, errors); at the end a summary line, and with `--json FILE` the figures:
items_per_s, bytes_per_s, batches, items, missing, errors, busy, p50_ms, p90_ms, p99_ms,
max_ms, and the parameters. `--put COUNT --item-size SIZE` first stores COUNT objects of SIZE
random bytes under `bench/` in the bucket (created if missing), so one command reproduces a
figure: S1 of bench/RESULTS.md is `--put 10000 --item-size 16KiB --clients 32 --batch-size 64`.
"""
import http.client
import json
import multiprocessing
import os
import queue
import random
import sys
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

from .client import GetError, error_text, receive_batch, retry_after_of, human
from .config import ConfigError, as_duration, as_size

LIST_PAGE = 10_000
IN_ARCHIVE = 1 << 7      # LsoEntry flag: a file inside a shard (store/archlist.py)
ARCH_DIR = 1 << 3        # LsoMsg flag: list the files inside shards too
REDRAW = 0.5
MIX_KINDS = ("plain", "archived", "missing")


class BenchError(Exception):
    """The run cannot start or went wrong; one line for the person who ran it."""


def parse_mix(text):
    """{"plain": p, "archived": a, "missing": m} shares summing to 1, from text such as
    `plain=80,archived=15,missing=5` (weights, any scale)."""
    weights = dict.fromkeys(MIX_KINDS, 0.0)
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, sep, w = part.partition("=")
        if not sep or kind.strip() not in weights:
            raise BenchError(f"invalid --mix part {part!r}: expecting KIND=WEIGHT with KIND "
                             f"one of {', '.join(MIX_KINDS)}")
        try:
            weights[kind.strip()] = float(w)
        except ValueError:
            raise BenchError(f"invalid --mix weight {w!r} for {kind}") from None
        if weights[kind.strip()] < 0:
            raise BenchError(f"invalid --mix weight {w!r} for {kind}: negative")
    total = sum(weights.values())
    if total <= 0:
        raise BenchError("invalid --mix: every weight is 0")
    return {k: v / total for k, v in weights.items()}


class Node:
    """The few HTTP calls the bench makes besides GetBatch (requests-free, one connection)."""

    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise BenchError(f"invalid URL {url!r}: expecting http://HOST:PORT")
        self.url, self.split = url, u
        self.base = u.path.rstrip("/")

    def connect(self, timeout=120.0):
        cls = http.client.HTTPSConnection if self.split.scheme == "https" else \
            http.client.HTTPConnection
        return cls(self.split.hostname, self.split.port, timeout=timeout)

    def call(self, method, path, body=None, headers=None, conn=None):
        own = conn is None
        conn = conn or self.connect(30.0)
        try:
            conn.request(method, self.base + path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read(), resp
        except (OSError, http.client.HTTPException) as exc:
            raise BenchError(f"cannot reach {self.url}: {exc}") from None
        finally:
            if own:
                conn.close()


def list_names(node, bucket, archived):
    """(plain object names, names of files inside shards) in `bucket`."""
    q = "/v1/buckets/" + urllib.parse.quote(bucket, safe="")
    plain, inside, token = [], [], ""
    lso = {"pagesize": LIST_PAGE, "props": "name"}
    if archived:
        lso["flags"] = str(ARCH_DIR)
    while True:
        body = json.dumps({"action": "list", "value": dict(lso, continuation_token=token)})
        status, data, resp = node.call("GET", q, body.encode(),
                                       {"Content-Type": "application/json"})
        if status != 200:
            raise BenchError(f"cannot list {bucket}: {error_text(resp, data)}")
        page = json.loads(data)
        for e in page.get("Entries") or ():
            (inside if e.get("f", 0) & IN_ARCHIVE else plain).append(e["n"])
        token = page.get("ContinuationToken") or ""
        if not token:
            return plain, inside


def put_objects(node, bucket, count, size, threads=8):
    """Store `count` objects of `size` random bytes as bench/NNNNNNN (the bucket created if
    it does not exist)."""
    q = "/v1/buckets/" + urllib.parse.quote(bucket, safe="")
    status, data, resp = node.call("HEAD", q)
    if status == 404:
        status, data, resp = node.call("POST", q, json.dumps({"action": "create-bck"}).encode(),
                                       {"Content-Type": "application/json"})
        if status != 200:
            raise BenchError(f"cannot create {bucket}: {error_text(resp, data)}")

    def put(chunk):
        conn = node.connect(60.0)
        try:
            for i in chunk:
                path = f"/v1/objects/{urllib.parse.quote(bucket, safe='')}/bench/{i:07d}"
                st, body, r = node.call("PUT", path, os.urandom(size), conn=conn)
                if st != 200:
                    raise BenchError(f"cannot store bench/{i:07d}: {error_text(r, body)}")
        finally:
            conn.close()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, [range(k, count, threads) for k in range(threads)]))


class _Discard:
    def write(self, data):
        return len(data)


def _client(url, bucket, names, mix, batch_size, deadline, seed, out):
    """One client process: batches until `deadline`; each reported on `out` as
    (kind, ms, entries, missing, bytes, detail), kind "ok", "busy" or "error"."""
    rnd = random.Random(seed)
    node = Node(url)
    path = node.base + "/v1/ml/moss/" + urllib.parse.quote(bucket, safe="")
    kinds = [k for k in MIX_KINDS if mix[k] > 0]
    weights = [mix[k] for k in kinds]
    conn = node.connect()
    n = 0
    while time.monotonic() < deadline:
        entries = []
        for kind in rnd.choices(kinds, weights, k=batch_size):
            if kind == "missing":
                n += 1
                entries.append({"objname": f"bench-missing/{seed}-{n}"})
            else:
                entries.append({"objname": rnd.choice(names[kind])})
        body = json.dumps({"in": entries, "strm": True, "coer": mix["missing"] > 0}).encode()
        t0 = time.monotonic()
        try:
            conn.request("GET", path, body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            if resp.status == 429:
                resp.read()
                out.put(("busy", 0, 0, 0, 0, ""))
                time.sleep(min(retry_after_of(resp), max(deadline - time.monotonic(), 0)))
                continue
            if resp.status != 200:
                out.put(("error", 0, 0, 0, 0, error_text(resp, resp.read())))
                continue
            got, missing, nbytes = receive_batch(resp, _Discard(), "tar", None)
            resp.read()   # marks the response done, so the connection takes the next request
            if got != batch_size:
                raise GetError(f"incomplete archive: {got} of {batch_size} entries")
        except (GetError, OSError, http.client.HTTPException) as exc:
            out.put(("error", 0, 0, 0, 0, str(exc) or type(exc).__name__))
            conn.close()
            conn = node.connect()
            continue
        ms = (time.monotonic() - t0) * 1000
        if time.monotonic() <= deadline:
            out.put(("ok", ms, got, missing, nbytes, ""))
    conn.close()
    out.put(None)


def percentile(sorted_values, q):
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


class Tally:
    """What the clients reported so far, and its figures."""

    def __init__(self):
        self.latencies = []
        self.items = self.missing = self.bytes = self.errors = self.busy = 0
        self.first_error = ""

    def add(self, kind, ms, items, missing, nbytes, detail):
        if kind == "ok":
            self.latencies.append(ms)
            self.items += items
            self.missing += missing
            self.bytes += nbytes
        elif kind == "busy":
            self.busy += 1
        else:
            self.errors += 1
            self.first_error = self.first_error or detail

    def figures(self, seconds):
        lat = sorted(self.latencies)
        secs = max(seconds, 1e-9)
        return {"items_per_s": round(self.items / secs, 1),
                "bytes_per_s": round(self.bytes / secs), "batches": len(lat),
                "items": self.items, "missing": self.missing, "bytes": self.bytes,
                "errors": self.errors, "busy": self.busy,
                "p50_ms": round(percentile(lat, 0.50), 2),
                "p90_ms": round(percentile(lat, 0.90), 2),
                "p99_ms": round(percentile(lat, 0.99), 2),
                "max_ms": round(lat[-1], 2) if lat else 0.0, "seconds": round(seconds, 3)}


def line(f):
    return (f"{f['items_per_s']:,.0f} items/s  {human(f['bytes_per_s'])}/s  "
            f"{f['batches']} batches  p50 {f['p50_ms']:.1f} ms  p99 {f['p99_ms']:.1f} ms  "
            f"errors {f['errors']}  busy {f['busy']}")


def run_bench(url, bucket, clients, batch_size, duration, mix, stream=None):
    """Drive the node; returns the figures (Tally.figures plus the first error's text)."""
    stream = stream or sys.stderr
    node = Node(url)
    plain, inside = list_names(node, bucket, mix["archived"] > 0)
    names = {"plain": plain, "archived": inside}
    for kind in ("plain", "archived"):
        if mix[kind] > 0 and not names[kind]:
            what = "objects" if kind == "plain" else "files inside shards"
            raise BenchError(f"bucket {bucket} holds no {what} for the mix "
                             "(--put COUNT --item-size SIZE stores objects)")
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    t0 = time.monotonic()
    deadline = t0 + duration
    procs = [ctx.Process(target=_client, daemon=True,
                         args=(url, bucket, names, mix, batch_size, deadline, 1000 + k, out))
             for k in range(clients)]
    for p in procs:
        p.start()
    tally, live = Tally(), stream.isatty()
    running, next_draw = clients, t0 + REDRAW
    try:
        while running:
            try:
                msg = out.get(timeout=REDRAW)
            except queue.Empty:
                msg = False
                if not any(p.is_alive() for p in procs):
                    raise BenchError(f"{running} client process(es) died without a word")
            if msg is None:
                running -= 1
            elif msg:
                tally.add(*msg)
            now = time.monotonic()
            if live and now >= next_draw:
                next_draw = now + REDRAW
                stream.write("\r" + line(tally.figures(now - t0)) + " \x1b[K")
                stream.flush()
            if now > deadline + 300:
                raise BenchError(f"{running} client(s) did not stop 300 s after the end")
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join(5)
        if live:
            stream.write("\r\x1b[K")
            stream.flush()
    figures = tally.figures(min(time.monotonic(), deadline) - t0)
    figures["first_error"] = tally.first_error
    return figures


def add_parser(sub):
    b = sub.add_parser("bench", help="drive a node or cluster with GetBatch load",
                       description=__doc__.split("\n\n")[1].replace("\n", " "))
    b.add_argument("--url", default=os.environ.get("AIS_ENDPOINT") or "http://127.0.0.1:51080",
                   help="the node (default $AIS_ENDPOINT or http://127.0.0.1:51080)")
    b.add_argument("--bucket", required=True, help="the bucket whose objects are asked for")
    b.add_argument("--clients", type=int, default=8, help="client processes (default 8)")
    b.add_argument("--batch-size", type=int, default=64, help="entries per batch (default 64)")
    b.add_argument("--duration", default="30s", help="how long to run (default 30s)")
    b.add_argument("--mix", default="plain=100",
                   help="shares of plain objects, files inside shards and missing names, "
                        "e.g. plain=80,archived=15,missing=5 (default plain=100)")
    b.add_argument("--put", type=int, default=0, metavar="COUNT",
                   help="first store COUNT objects of --item-size under bench/ in the bucket")
    b.add_argument("--item-size", default="16KiB", help="with --put (default 16KiB)")
    b.add_argument("--json", metavar="FILE", help="write the figures to FILE as JSON")


def run(args):
    """`getbatch bench`; returns the exit status."""
    try:
        if not 1 <= args.clients <= 1024:
            raise BenchError(f"invalid --clients {args.clients}: expecting 1 to 1024")
        if not 1 <= args.batch_size <= 100_000:
            raise BenchError(f"invalid --batch-size {args.batch_size}: expecting 1 to 100000")
        try:
            duration = as_duration(args.duration)
            size = as_size(args.item_size)
        except (ValueError, ConfigError) as exc:
            raise BenchError(f"invalid --duration or --item-size: {exc}") from None
        if duration <= 0:
            raise BenchError("invalid --duration: expecting more than 0")
        mix = parse_mix(args.mix)
        if args.put:
            put_objects(Node(args.url), args.bucket, args.put, size)
        f = run_bench(args.url, args.bucket, args.clients, args.batch_size, duration, mix)
    except BenchError as exc:
        print(f"getbatch bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("getbatch bench: interrupted", file=sys.stderr)
        return 130
    f.update(url=args.url, bucket=args.bucket, clients=args.clients,
             batch_size=args.batch_size, duration_s=duration, mix=mix)
    print(line(f))
    if f["errors"]:
        print(f"first error: {f['first_error']}", file=sys.stderr)
    if args.json:
        try:
            with open(args.json, "w") as fh:
                json.dump(f, fh, indent=2)
                fh.write("\n")
        except OSError as exc:
            print(f"getbatch bench: cannot write {args.json}: {exc.strerror}", file=sys.stderr)
            return 1
    return 0
