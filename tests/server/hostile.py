"""Hostile clients for the slow-client tests and the before/after measurement.

One driver thread holds many raw sockets and plays, at once: idle connections (connect,
send nothing), slowloris heads (one byte per second), stalled bodies (a complete head
announcing a body, a few bytes of it, then nothing) and vanishing clients (half a head,
then an RST). Everything is non-blocking, so a few hundred connections cost one thread.
"""
import errno
import socket
import struct
import threading
import time

SLOW_HEAD = (b"GET /v1/health HTTP/1.1\r\nHost: x\r\nUser-Agent: slowloris\r\n"
             + b"X-Pad: " + b"a" * 200 + b"\r\n\r\n")
STALLED_HEAD = (b"PUT /v1/objects/hostile/stalled?provider=ais HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: 1000000\r\n\r\n" + b"z" * 10)
HALF_HEAD = b"GET /v1/health HTTP/1.1\r\nHo"


def connect(port, source="127.0.0.1", blocking=False):
    s = socket.socket()
    s.bind((source, 0))
    s.setblocking(False)
    try:
        s.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    if blocking:
        s.setblocking(True)
    return s


def accepted_all(port, timeout=30.0):
    """Wait until the server listening on `port` has accepted every connection made to it
    (its listening sockets' accept queues, /proc/net/tcp's rx_queue, are empty): a test then
    knows its connections are the server's, not the kernel's, without sleeping a fixed time."""
    want = f":{port:04X} "
    deadline = time.monotonic() + timeout
    while True:
        queued = 0
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                with open(table) as f:
                    lines = f.readlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                if fields[3] == "0A" and (fields[1] + " ").endswith(want):   # LISTEN
                    queued += int(fields[4].split(":")[1], 16)
        if not queued:
            return
        assert time.monotonic() < deadline, f"{queued} connections not accepted in {timeout}s"
        time.sleep(0.02)


def rst_close(s):
    """Close with an RST (SO_LINGER 0): a client that vanishes without a FIN."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    s.close()


class Hostile(threading.Thread):
    """Keeps `idle`, `slow`, `stalled` connections open and churns `vanishing` ones.

    When the server closes a connection, the seconds it lived (at least; more when this thread
    runs late) go to `lifetimes[kind]`
    and the first bytes it answered (if any) to `answers[kind]`; it is then replaced if
    `replace` is set."""

    def __init__(self, port, idle=0, slow=0, stalled=0, vanishing=0, replace=False,
                 source="127.0.0.1"):
        super().__init__(daemon=True)
        self.port, self.source, self.replace = port, source, replace
        self.want = {"idle": idle, "slow": slow, "stalled": stalled, "vanishing": vanishing}
        self.conns = []       # [sock, kind, opened_at, sent_bytes, received]
        self.lifetimes = {k: [] for k in self.want}
        self.answers = {k: [] for k in self.want}
        self.opened = {k: 0 for k in self.want}
        self.stop_event = threading.Event()

    def _open(self, kind):
        # the time is taken before the connect: a lifetime is never counted short, however
        # late this thread runs
        t0 = time.monotonic()
        try:
            s = connect(self.port, self.source)
        except OSError:
            return
        self.opened[kind] += 1
        self.conns.append([s, kind, t0, 0, b""])

    def _send(self, c, data):
        try:
            c[0].send(data)
            return True
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False

    def _gone(self, c):
        """True once the server has closed (EOF or reset); keeps the start of its answer."""
        try:
            while True:
                data = c[0].recv(65536)
                if not data:
                    return True
                c[4] = (c[4] + data)[:64]
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as e:
            return e.errno != errno.ENOTCONN

    def run(self):
        for kind, n in self.want.items():
            for _ in range(n if kind != "vanishing" else 0):
                self._open(kind)
        while not self.stop_event.is_set():
            now = time.monotonic()
            keep = []
            for c in self.conns:
                s, kind, opened, sent, _ = c
                if kind == "stalled" and sent == 0:
                    c[3] = len(STALLED_HEAD) if self._send(c, STALLED_HEAD) else 0
                elif kind == "slow" and sent < len(SLOW_HEAD) and now - opened >= sent:
                    if self._send(c, SLOW_HEAD[sent:sent + 1]):
                        c[3] += 1
                if self._gone(c):
                    self.lifetimes[kind].append(time.monotonic() - opened)
                    if c[4]:
                        self.answers[kind].append(c[4])
                    s.close()
                    if self.replace:
                        self._open(kind)
                    continue
                keep.append(c)
            self.conns = keep
            # vanishing clients: a few per tick, each sends half a head and resets
            for _ in range(self.want["vanishing"]):
                try:
                    s = connect(self.port, self.source, blocking=True)
                    s.settimeout(1)
                    s.sendall(HALF_HEAD)
                    self.opened["vanishing"] += 1
                    rst_close(s)
                except OSError:
                    pass
            self.stop_event.wait(0.1)
        for c in self.conns:
            c[0].close()

    def stop(self):
        self.stop_event.set()
        self.join(10)
