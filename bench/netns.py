"""Nodes as separate hosts on one machine: network namespaces joined by a shaped bridge.

Each "host" is a network namespace with one veth link to a bridge in the root namespace. Both
directions of every link are shaped with a token bucket (`tc tbf`) to a NIC rate, so a node's
uplink and downlink are limited the way one machine's NIC would be. Processes started with
`Hosts.popen(i, argv)` run inside host i; the root namespace (the benchmark client, etcd) reaches
the hosts at their addresses through the bridge. Needs root (CAP_NET_ADMIN) and iproute2.

Only addresses inside these namespaces (10.77.0.0/24) and loopback are ever used.
"""
import os
import shutil
import subprocess

SUBNET = "10.77.0"
BRIDGE = "gbbr0"
ROOT_ADDR = f"{SUBNET}.1"


def available():
    """(True, "") when namespaces can be made here, else (False, why)."""
    if os.geteuid() != 0:
        return False, "needs root (CAP_NET_ADMIN) to create network namespaces"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return False, f"needs `{tool}` (Debian package iproute2)"
    return True, ""


def _ip(*args, ns=None):
    argv = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class Hosts:
    """`n` namespaces gbh0..gbh{n-1} with addresses 10.77.0.10+i, links shaped to `rate`
    (a tc rate such as "1gbit"; None leaves them unshaped)."""

    def __init__(self, n, rate="1gbit", prefix="gbh"):
        self.n = n
        self.rate = rate
        self.prefix = prefix
        self.names = [f"{prefix}{i}" for i in range(n)]
        self.addrs = [f"{SUBNET}.{10 + i}" for i in range(n)]

    def __enter__(self):
        self.close()
        _ip("ip", "link", "add", BRIDGE, "type", "bridge")
        _ip("ip", "addr", "add", f"{ROOT_ADDR}/24", "dev", BRIDGE)
        _ip("ip", "link", "set", BRIDGE, "up")
        for i, ns in enumerate(self.names):
            host_if, root_if = f"{ns}i", f"{ns}r"
            _ip("ip", "netns", "add", ns)
            _ip("ip", "link", "add", root_if, "type", "veth", "peer", "name", host_if)
            _ip("ip", "link", "set", host_if, "netns", ns)
            _ip("ip", "link", "set", root_if, "master", BRIDGE, "up")
            _ip("ip", "addr", "add", f"{self.addrs[i]}/24", "dev", host_if, ns=ns)
            _ip("ip", "link", "set", host_if, "up", ns=ns)
            _ip("ip", "link", "set", "lo", "up", ns=ns)
            if self.rate:
                # egress of the host side = the host's uplink; egress of the root side = its downlink
                shape = ["root", "tbf", "rate", self.rate, "burst", "512kb", "latency", "20ms"]
                _ip("tc", "qdisc", "add", "dev", host_if, *shape, ns=ns)
                _ip("tc", "qdisc", "add", "dev", root_if, *shape)
        return self

    def popen(self, i, argv, **kw):
        """Start `argv` inside host i."""
        return subprocess.Popen(["ip", "netns", "exec", self.names[i], *argv], **kw)

    def close(self):
        for ns in self.names:
            subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "link", "del", BRIDGE], stderr=subprocess.DEVNULL)

    def __exit__(self, *exc):
        self.close()
