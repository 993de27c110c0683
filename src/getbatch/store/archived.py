"""`shard.tar/x.wav` named as one object: the file x.wav inside the shard object shard.tar.

Lhotse URLs and the SDK's plain name lists write archived files this way, with no
`archpath`. GetBatch, object GET and HEAD resolve such a name with this one rule: only
after the name itself was not found, try each `/` whose left part has a shard extension
(.tar, .tgz, .tar.gz, .tar.lz4, .zip), the shortest first; the first existing shard that
holds the rest as a regular file wins.
"""
from ..archive import MemberNotFound
from ..archive.formats import format_from_name
from .errors import ObjectNotFound


def archive_splits(name, *, empty_rest=False):
    """(shard name, rest) for each `/` in `name` whose left part has a shard extension, the
    shortest first; `empty_rest`: also when nothing follows the `/`."""
    i = name.find("/")
    while i > 0:
        rest = name[i + 1:]
        if (rest or empty_rest) and format_from_name(name[:i]) is not None:
            yield name[:i], rest
        i = name.find("/", i + 1)


def find_archived(name, open_shard, release=None):
    """(shard, shard name, archpath) of the file `name` names inside a shard, or None.

    `open_shard(shard_name)` returns an open Shard or raises ObjectNotFound; a shard that does
    not hold the file is passed to `release` (when the caller owns it). Other errors (a shard
    that is not a readable archive) propagate: the name does point into it."""
    for shard_name, archpath in archive_splits(name):
        try:
            shard = open_shard(shard_name)
        except ObjectNotFound:
            continue
        try:
            shard.lookup(archpath)
        except MemberNotFound:
            if release is not None:
                release(shard)
            continue
        except BaseException:
            if release is not None:
                release(shard)
            raise
        return shard, shard_name, archpath
    return None
