"""`extract_to`: write a shard's regular files under a directory, refusing unsafe names.

A member name that is absolute, holds a `..` component or a NUL byte could write outside
the destination, so it raises UnsafeName before anything is written. Each file is written
to a temporary name and renamed into place, so an interrupted extraction leaves no
partial file under a member's name. Members are streamed in archive order (a compressed
shard is inflated once, and no member is held whole in memory).
"""
import os
from collections.abc import Iterable

from .errors import UnsafeName
from .member import FILE, Shard


def check_member_name(shard_label: object, name: str) -> str:
    """The relative path to write `name` at; raises UnsafeName."""
    if not name or "\0" in name:
        raise UnsafeName(shard_label, f"member name {name!r} is empty or contains NUL")
    if name.startswith("/") or os.path.isabs(name):
        raise UnsafeName(shard_label, f"member name {name!r} is an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts or not parts:
        raise UnsafeName(shard_label, f"member name {name!r} leads outside the destination")
    return os.path.join(*parts)


def extract_to(shard: Shard, dest: str | os.PathLike[str],
               names: Iterable[str] | None = None) -> list[str]:
    """Write the named regular-file members (default: all) under `dest`; return the paths."""
    names = ([m.name for m in shard.members() if m.kind == FILE] if names is None
             else list(names))
    rels = [check_member_name(shard.name, n) for n in names]
    offsets = [shard.lookup(n).offset for n in names]  # a missing member fails before writing
    out = [""] * len(names)
    for i in sorted(range(len(names)), key=offsets.__getitem__):
        target = os.path.join(dest, rels[i])
        os.makedirs(os.path.dirname(target) or dest, exist_ok=True)
        tmp = f"{target}.part-{os.getpid()}"
        try:
            with open(tmp, "wb") as f:
                for chunk in shard.iter_member(names[i]):
                    f.write(chunk)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        os.replace(tmp, target)
        out[i] = target
    return out
