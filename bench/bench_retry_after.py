"""How long the AIS SDK waits out a one-second outage of the remote store behind a node.

Run: python bench/bench_retry_after.py [--rounds 5] [--outage 1] [--server-src DIR]
A node reads aws:// through a TCP relay in front of moto. Each round the relay goes down
(connections refused, open ones cut), the real SDK (`aistore==2.0.0`, its default retry
policy) GETs an object the node has not cached, and the relay comes back `--outage` seconds
later.
The node answers 503 while the store is away; the SDK retries 503 (urllib3) after the
answer's Retry-After or, without one, after its own backoff (0, 6, 12, 24, 48 s). Prints the
median time from the GET to its bytes; `--server-src` runs the node from another source tree
(an older commit) to compare. bench/RESULTS.md, "Retry-After", records a run.
"""
import argparse
import os
import socket
import statistics
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "src"))

from tests.remote_servers import S3_ENV, boto3_client, free_port, start_moto  # noqa: E402
from tests.support.nodes import Node, serve_argv  # noqa: E402

BUCKET = "bench-retry"


class Relay:
    """A TCP relay on a fixed loopback port to `target`; down() refuses and cuts, up() serves."""

    def __init__(self, target_port):
        self.port = free_port()
        self.target = ("127.0.0.1", target_port)
        self.lsock = None
        self.conns = set()
        self.lock = threading.Lock()

    def up(self):
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(64)
        self.lsock = ls
        threading.Thread(target=self._accept, args=(ls,), daemon=True).start()

    def down(self):
        self.lsock.close()
        with self.lock:
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.conns.clear()

    def _accept(self, ls):
        while True:
            try:
                a, _ = ls.accept()
            except OSError:
                return
            b = socket.create_connection(self.target)
            with self.lock:
                self.conns.update((a, b))
            for src, dst in ((a, b), (b, a)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--outage", type=float, default=1.0, help="seconds the store is away")
    p.add_argument("--server-src", help="run the node from this src/ directory")
    args = p.parse_args()
    from aistore import Client

    tmp = tempfile.mkdtemp(prefix="bench-retry-")
    moto = start_moto(tmp)
    relay = Relay(moto.port)
    relay.up()
    env = dict(S3_ENV, AWS_ENDPOINT_URL=f"http://127.0.0.1:{relay.port}")
    if args.server_src:
        env["PYTHONPATH"] = os.path.abspath(args.server_src)
    node = Node(os.path.join(tmp, "data"), os.path.join(tmp, "server.log"),
                serve_argv(workers=1, threads=4), env=env)
    try:
        s3 = boto3_client(moto)
        s3.create_bucket(Bucket=BUCKET)
        for i in range(args.rounds):
            s3.put_object(Bucket=BUCKET, Key=f"o{i}", Body=b"x" * 1000)
        bucket = Client(node.url).bucket(BUCKET, provider="aws")
        bucket.head()
        waits = []
        for i in range(args.rounds):
            relay.down()
            back = threading.Timer(args.outage, relay.up)
            t0 = time.monotonic()
            back.start()
            data = bucket.object(f"o{i}").get_reader().read_all()
            waits.append(time.monotonic() - t0)
            back.join()
            assert data == b"x" * 1000
            print(f"round {i}: {waits[-1]:.2f} s", flush=True)
        print(f"outage {args.outage:g} s: the SDK had the object after {statistics.median(waits):.2f} s "
              f"(median of {args.rounds}; min {min(waits):.2f}, max {max(waits):.2f})")
    finally:
        node.stop()
        moto.stop()


if __name__ == "__main__":
    main()
