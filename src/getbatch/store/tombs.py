"""Tombstones: what a node remembers of a name deleted on a cluster.

A delete leaves a tombstone with the delete's stamp on the nodes that held the name (and on
its owners), so a copy that missed the delete (its node was away) or a replica older than
the delete cannot bring the name back: newest stamp wins, and a tombstone is a version with
no bytes. Tombstones are never listed or served, and are collected by rebalance after
`TOMB_TTL` (docs/consistency.md).

One small file per name, outside the object tree (a deleted `a` and a live `a/b` must not
collide): `<dir>/<bucket>/<h[:2]>/<h>`, h a 128-bit hash of the name, holding
`<stamp>\\n<name>`. Written atomically (temp file and rename); callers serialise writes of
one name (the store's publish lock).
"""
import os
import shutil
import xxhash

from .fsutil import own

TOMB_TTL = 24 * 3600.0  # seconds a tombstone is kept before rebalance may collect it


def _encode(name):
    return name.encode("utf-8", "surrogateescape")


class Tombs:
    def __init__(self, root):
        self.root = root
        os.makedirs(root, exist_ok=True)

    def _path(self, bucket, name):
        h = xxhash.xxh3_128_hexdigest(_encode(name))
        return f"{self.root}/{bucket}/{h[:2]}/{h}"

    def get(self, bucket, name):
        """The stamp of the name's tombstone, "" when there is none."""
        try:
            with open(self._path(bucket, name), "rb") as f:
                return f.read().split(b"\n", 1)[0].decode("ascii", "replace")
        except (FileNotFoundError, NotADirectoryError):
            return ""

    def put(self, bucket, name, stamp):
        path = self._path(bucket, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        try:
            own(fd)
            os.write(fd, stamp.encode("ascii") + b"\n" + _encode(name))
        finally:
            os.close(fd)
        os.replace(tmp, path)

    def drop(self, bucket, name, stamp=None):
        """Remove the tombstone (only if its stamp is still `stamp`, when given)."""
        if stamp is not None and self.get(bucket, name) != stamp:
            return
        try:
            os.unlink(self._path(bucket, name))
        except FileNotFoundError:
            pass

    def items(self, bucket):
        """[(name, stamp)] of the bucket's tombstones, in name order."""
        out = []
        base = f"{self.root}/{bucket}"
        try:
            subdirs = os.listdir(base)
        except FileNotFoundError:
            return out
        for sub in subdirs:
            try:
                entries = os.scandir(f"{base}/{sub}")
            except (FileNotFoundError, NotADirectoryError):
                continue
            with entries:
                for e in entries:
                    if e.name.endswith(".tmp"):
                        continue
                    try:
                        with open(e.path, "rb") as f:
                            stamp, _, name = f.read().partition(b"\n")
                    except FileNotFoundError:
                        continue
                    out.append((name.decode("utf-8", "surrogateescape"),
                                stamp.decode("ascii", "replace")))
        out.sort()
        return out

    def buckets(self):
        try:
            return sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []

    def drop_bucket(self, bucket):
        shutil.rmtree(f"{self.root}/{bucket}", ignore_errors=True)
