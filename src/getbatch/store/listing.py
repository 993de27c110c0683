"""Sorted, paged walk of a bucket directory.

Names come out in code-point order, which for UTF-8 names equals the byte order AIS
uses. Sorting each directory's entries by name alone would be wrong: `a-c` < `a/b` but
directory `a` < file `a-c`. Sorting directories under the key `name + "/"` makes the
depth-first walk emit exactly the global order. Only the directories on the current
path are held in memory, as (key, kind) pairs, and subtrees that cannot hold a name
after the page token or under the prefix are never opened.
"""
import os
import stat as st_

_FILE, _DIR, _LINK = 0, 1, 2


def _sorted_children(bdir, rel, prefix, after):
    """(key, kind) of the entries of directory `rel` (relative, "" or ending in "/")
    that may hold names matching `prefix` and greater than `after`, sorted by key."""
    keyed = []
    try:
        it = os.scandir(f"{bdir}/{rel}" if rel else bdir)
    except (FileNotFoundError, NotADirectoryError):
        return keyed
    with it:
        for e in it:
            if e.is_dir(follow_symlinks=False):
                key = f"{rel}{e.name}/"
                if not (key.startswith(prefix) or prefix.startswith(key)):
                    continue
                # every name below starts with `key`; skip when all of them are <= after
                if after > key and not after.startswith(key):
                    continue
                keyed.append((key, _DIR))
            else:
                kind = _FILE if e.is_file(follow_symlinks=False) else (
                    _LINK if e.is_symlink() else None)
                if kind is None:
                    continue  # fifos, sockets, devices are not objects
                key = rel + e.name
                if key > after and key.startswith(prefix):
                    keyed.append((key, kind))
    keyed.sort()
    return keyed


def _walk(bdir, rel, prefix, after):
    for key, kind in _sorted_children(bdir, rel, prefix, after):
        if kind == _DIR:
            yield from _walk(bdir, key, prefix, after)
        else:
            yield key, kind == _LINK


def _start_dir(bdir, prefix):
    """The deepest directory fully named by `prefix` ("" or ending in "/"), or None
    when it cannot hold objects (bad component, missing, or not a real directory:
    listings do not follow symlinked directories, which could loop)."""
    rel = prefix[:prefix.rfind("/") + 1]
    if not rel:
        return ""
    if "\0" in rel:
        return None
    cur = bdir
    for part in rel[:-1].split("/"):
        if part in ("", ".", ".."):
            return None
        cur = f"{cur}/{part}"
        try:
            if not st_.S_ISDIR(os.lstat(cur).st_mode):
                return None
        except OSError:
            return None
    return rel


def walk_names(bdir, prefix="", after=""):
    """Yield (name, is_symlink) for every object below `bdir` whose name starts with
    `prefix` and sorts after `after`, in order."""
    rel = _start_dir(bdir, prefix)
    if rel is None:
        return iter(())
    return _walk(bdir, rel, prefix, after)
