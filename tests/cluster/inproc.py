"""Test helper: three getbatch apps serving real HTTP from threads of the test process, with a
fixed cluster map, for the DT's merge and failover without processes or etcd. A node's answers
can be cut after some bytes or stalled, which is how a peer dying or freezing mid-batch looks
to the DT."""
import io
import socket
import threading
import time
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from getbatch.cluster.peers import SECRET_HEADER, Peers
from getbatch.cluster.share import LocalShare
from getbatch.cluster.smap import NodeInfo, Smap
from getbatch.config import Config
from getbatch.server.app import create_app
from getbatch.store import LocalStore, Storage
from getbatch.store.errors import BucketNotFound

SECRET = {SECRET_HEADER: "s3cr3t"}


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


class _Buckets:
    """The cluster's bucket table: one set of names every node of a MiniCluster shares (a
    node may hold no directory of a bucket, as a real node that was never asked to store
    anything in it)."""

    def __init__(self, names):
        self._names = names

    def names(self):
        return sorted(self._names)

    def get(self, name):
        return {} if name in self._names else None

    def require(self, name):
        if name not in self._names:
            raise BucketNotFound(name)


class StaticCluster:
    """What create_app takes of a node's Cluster, over a fixed map and the local store alone
    (objects are placed by the test)."""

    uuid = "inproc"
    created = "2026-01-01T00:00:00Z"
    etcd = None     # runtime settings in the data dir, as on a single node
    secret = SECRET[SECRET_HEADER]
    store = None    # no ClusterStore: every bucket has one copy, no versions to compare

    def __init__(self, smap, bucket_names):
        self.smap = smap
        self.node = smap.me
        self.bucket_names = bucket_names
        self.share = None
        self.peers = Peers(self.secret)   # this node's own, as a real node's

    def start(self, storage):
        self.share = LocalShare(storage.backends["ais"], _Buckets(self.bucket_names))
        # buckets are the table's (as a real node's ClusterStore has them), objects this node's
        return Storage(dict(storage.backends, ais=self.share))


class Faults:
    """WSGI middleware: with `cut_after` set, an answer ends (connection dropped) after that
    many body bytes; with `stall` set, it sleeps that long there instead."""

    def __init__(self, app):
        self.app = app
        self.cut_after = None
        self.stall = None

    def __call__(self, environ, start_response):
        body = self.app(environ, start_response)
        if self.cut_after is None or not environ["PATH_INFO"].startswith("/v1/_peer/batch"):
            return body
        return self._limited(body, self.cut_after, self.stall)

    @staticmethod
    def _limited(body, limit, stall):
        sent = 0
        try:
            for chunk in body:
                if sent + len(chunk) > limit:
                    yield bytes(chunk[:limit - sent])
                    if stall:
                        time.sleep(stall)
                        continue
                    raise ConnectionAbortedError("test: the node dies here")
                sent += len(chunk)
                yield chunk
        finally:
            close = getattr(body, "close", None)
            if close:
                close()


class Node:
    def __init__(self, node_id, root, port, nodes, bucket_names):
        self.id = node_id
        self.url = f"http://127.0.0.1:{port}"
        self.store = LocalStore(f"{root}/{node_id}")
        self.storage = Storage({"ais": self.store})
        self.config = Config().replace(node_id=node_id, data_dir=f"{root}/{node_id}")
        self.cluster = StaticCluster(Smap(1, nodes, node_id), bucket_names)
        self.faults = Faults(create_app(self.config, self.storage, self.cluster))
        self.server = make_server("127.0.0.1", port, self.faults, server_class=_Server,
                                  handler_class=_Quiet)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def put(self, bucket, name, data):
        if not self.store.has_bucket(bucket):
            self.store.create_bucket(bucket)
        self.store.put(bucket, name, io.BytesIO(data))


class MiniCluster:
    def __init__(self, root, n=3):
        ports = []
        for _ in range(n):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                ports.append(s.getsockname()[1])
        infos = [NodeInfo(f"n{i}", f"http://127.0.0.1:{p}") for i, p in enumerate(ports)]
        self.smap = Smap(1, infos, infos[0].id)
        self.bucket_names = set()
        self.nodes = [Node(info.id, root, p, infos, self.bucket_names)
                      for info, p in zip(infos, ports)]
        self.by_id = {n.id: n for n in self.nodes}

    def create_bucket(self, name, dirs=True):
        """A bucket of the cluster; `dirs`: its directory made on every node now (else on
        each node when an object is first stored there)."""
        self.bucket_names.add(name)
        for n in self.nodes if dirs else ():
            n.store.create_bucket(name)

    def put(self, bucket, name, data, copies=1):
        """Store the object on its first `copies` HRW owners; returns them."""
        owners = self.smap.owners("ais", bucket, name, copies)
        for o in owners:
            self.by_id[o.id].put(bucket, name, data)
        return [self.by_id[o.id] for o in owners]

    def stop(self):
        for n in self.nodes:
            n.server.shutdown()
            n.server.server_close()


class HostilePeer:
    """A "node" on a free loopback port that answers every request with `answer(body)` (raw
    bytes: status line, headers, body), then closes: what a buggy or hostile peer sends."""

    def __init__(self, answer):
        self.answer = answer
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, body = data.split(b"\r\n\r\n", 1)
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                while len(body) < length:
                    body += conn.recv(65536)
                conn.sendall(self.answer(body))

    def close(self):
        self.sock.close()
