"""Would lz4 on the peer streams pay? Rates on this CPU, and a transfer over a shaped link.

    sudo PYTHONPATH=src:. python bench/bench_peer_compress.py [--rates 1gbit,none]

Peer-stream compression is not built (bench/RESULTS-cluster.md); this measures whether it
would pay, without building it. Needs the `lz4` package (not a getbatch dependency).

Payloads: items of 4 KiB and 64 KiB, text-like (slices of the Python standard library's
source files: prose, code, repeated identifiers) and random (os.urandom, like already
compressed media).
- CPU: lz4 frame compress and decompress rates per item on one core (MB/s of uncompressed
  bytes per CPU second) and the compressed size ratio.
- Link: two hosts (bench/netns.py); a sender in one streams 256 MiB of items to a receiver in
  the other, as a peer's stream to its DT: length-prefixed frames, raw, or each item
  compressed by the sender and decompressed by the receiver. The figure is uncompressed
  MB/s at the receiver (wall time: on a loaded machine the compressing side is slowed
  by other work as well).
"""
import argparse
import glob
import os
import signal
import socket
import struct
import subprocess
import sys
import sysconfig
import time

import lz4.frame

TOTAL = 256 << 20
PORT = 51090
SIZES = (4096, 65536)


def payload(kind, size, count):
    """`count` distinct items of `size` bytes."""
    if kind == "random":
        return [os.urandom(size) for _ in range(count)]
    text = bytearray()
    for path in sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py"))):
        with open(path, "rb") as f:
            text += f.read()
        if len(text) >= size * count:
            break
    return [bytes(text[i * size:(i + 1) * size]) for i in range(count)]


def cpu_rates():
    print(f"{'payload':16} {'ratio':>6} {'compress MB/s':>14} {'decompress MB/s':>16}")
    for kind in ("text", "random"):
        for size in SIZES:
            items = payload(kind, size, max(64, (16 << 20) // size))
            # CPU time, not wall time: on a shared machine this is the rate of one core
            t0 = time.process_time()
            packed = [lz4.frame.compress(x, store_size=False) for x in items]
            t1 = time.process_time()
            for x in packed:
                lz4.frame.decompress(x)
            t2 = time.process_time()
            raw = sum(map(len, items))
            print(f"{kind} {size >> 10} KiB".ljust(16),
                  f"{sum(map(len, packed)) / raw:6.2f} {raw / (t1 - t0) / 1e6:14.0f} "
                  f"{raw / (t2 - t1) / 1e6:16.0f}", flush=True)


def send(addr, kind, size, compress):
    items = payload(kind, size, max(64, (16 << 20) // size))
    s = socket.create_connection((addr, PORT))
    sent = 0
    i = 0
    while sent < TOTAL:
        x = items[i % len(items)]
        i += 1
        body = lz4.frame.compress(x, store_size=False) if compress else x
        s.sendall(struct.pack("!IB", len(body), compress) + body)
        sent += len(x)
    s.close()


def receive(addr):
    srv = socket.create_server((addr, PORT))
    conn, _ = srv.accept()
    f = conn.makefile("rb", buffering=1 << 20)
    got = 0
    t0 = time.perf_counter()
    while True:
        head = f.read(5)
        if len(head) < 5:
            break
        n, packed = struct.unpack("!IB", head)
        body = f.read(n)
        got += len(lz4.frame.decompress(body)) if packed else len(body)
    print(f"{got / (time.perf_counter() - t0) / 1e6:.0f}")


def link(rates):
    from bench.netns import Hosts
    here = [sys.executable, os.path.abspath(__file__)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd()] + sys.path))
    with Hosts(2, rate=None) as hosts:
        for rate in rates:
            hosts.shape(rate)
            for kind in ("text", "random"):
                for size in SIZES:
                    row = []
                    for compress in (0, 1):
                        rx = hosts.popen(0, here + ["--receive", hosts.addrs[0]],
                                         stdout=subprocess.PIPE, text=True, env=env)
                        tx = None
                        try:
                            time.sleep(0.5)
                            tx = hosts.popen(1, here + ["--send", hosts.addrs[0], kind,
                                                        str(size), str(compress)], env=env)
                            tx.wait(timeout=300)
                            row.append(rx.communicate(timeout=60)[0].strip())
                        finally:
                            # a process outlives its namespace: never leave one behind
                            for proc in (tx, rx):
                                if proc is not None and proc.poll() is None:
                                    proc.kill()
                                    proc.wait()
                    print(f"link {rate or 'unshaped':8} {kind:6} {size >> 10:2} KiB: raw "
                          f"{row[0]:>5} MB/s, lz4 {row[1]:>5} MB/s", flush=True)


def _interrupt(*_):
    raise KeyboardInterrupt


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rates", default="1gbit,none")
    p.add_argument("--send", nargs=4, metavar=("ADDR", "KIND", "SIZE", "COMPRESS"))
    p.add_argument("--receive", metavar="ADDR")
    args = p.parse_args()
    if args.send:
        send(args.send[0], args.send[1], int(args.send[2]), int(args.send[3]))
    elif args.receive:
        receive(args.receive)
    else:
        signal.signal(signal.SIGTERM, _interrupt)   # unwind: the namespaces are removed
        cpu_rates()
        link([None if r == "none" else r for r in args.rates.split(",")])


if __name__ == "__main__":
    main()
