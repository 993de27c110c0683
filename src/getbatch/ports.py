"""Free loopback ports for local clusters and tests, chosen below the kernel's ephemeral range.

A port the kernel hands out for `bind(0)` lies in the ephemeral range, the same range it draws
the local ports of outgoing connections from: a node restarted on "its" port can then find it
taken by some client's connection. Ports below that range are never used that way.
"""
import random
import socket

_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
_LOWEST = 10000


def ephemeral_range():
    """(first, last) port of the kernel's ephemeral range (Linux's default where unreadable)."""
    try:
        with open(_RANGE_FILE) as f:
            first, last = (int(x) for x in f.read().split())
        return first, last
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(host, port):
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def free_ports(count=1, host="127.0.0.1"):
    """The first of `count` consecutive ports free on `host`, all below the ephemeral range."""
    top = ephemeral_range()[0] - count
    low = _LOWEST if top > _LOWEST + 1000 else 1024
    for _ in range(500):
        first = random.randrange(low, top)
        if all(_bindable(host, p) for p in range(first, first + count)):
            return first
    raise OSError(f"no {count} consecutive free ports found on {host} below {top + count}")


def free_port(host="127.0.0.1"):
    """One free port on `host` below the ephemeral range."""
    return free_ports(1, host)
