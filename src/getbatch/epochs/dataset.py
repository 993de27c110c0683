"""The samples of an epoch plan, built from shard listings and kept compact.

A plan is built from the shard indexes (the store's expanded listing: each shard's regular
files, sorted by name) without reading any data. Members are kept as one blob of UTF-8 names
joined by NUL (in no object name) with an offset array, plus the index of each member's
shard; samples are runs of consecutive members (`group: "sample"`: the files of one shard
sharing a basename up to its first dot, as WebDataset groups `x.jpg` + `x.cls`). A million
members with names of ~16 bytes cost about 30 MiB.

`to_bytes`/`from_bytes` persist it; `digest` (XXH64 of that form) tells whether two nodes
built the same dataset.
"""
import json
import struct
from array import array

import xxhash

from ..batch.errors import NotFound
from ..jobs.template import Template
from ..store.archlist import IN_ARCHIVE, IS_ARCHIVE
from ..store.errors import ObjectNotFound

_MAGIC = b"GBEPOCH1"
_PAGE = 10_000


class Dataset:
    """Shards, members and samples. Sample i is members [starts[i], starts[i+1])."""

    def __init__(self, shards, blob, offsets, shard_of, starts):
        self.shards = shards          # [shard name]
        self.blob = blob              # member names, NUL-joined
        self.offsets = offsets        # array('Q'): member i's name is blob[offsets[i]:offsets[i+1]-1]
        self.shard_of = shard_of      # array('I'): member i is in shards[shard_of[i]]
        self.starts = starts          # array('I'): sample i's first member; one past the end last
        self.digest = xxhash.xxh64_hexdigest(self.to_bytes())

    @property
    def samples(self):
        return len(self.starts) - 1

    @property
    def members(self):
        return len(self.shard_of)

    def member_name(self, i):
        return self.blob[self.offsets[i]:self.offsets[i + 1] - 1].decode()

    def sample_members(self, s):
        return range(self.starts[s], self.starts[s + 1])

    def nbytes(self):
        """Memory the arrays and names take (what a node holds per plan)."""
        return (len(self.blob) + sum(len(a) * a.itemsize for a in
                                      (self.offsets, self.shard_of, self.starts))
                + sum(len(s) + 49 for s in self.shards))

    def to_bytes(self):
        head = json.dumps(self.shards).encode()
        parts = [_MAGIC, struct.pack("<QQQQ", len(head), len(self.blob), len(self.shard_of),
                                     len(self.starts)), head, self.blob]
        for a in (self.offsets, self.shard_of, self.starts):
            parts.append(a.tobytes())
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data):
        if data[:8] != _MAGIC:
            raise ValueError("not an epoch plan file")
        nhead, nblob, nmembers, nstarts = struct.unpack_from("<QQQQ", data, 8)
        pos = 40
        shards = json.loads(data[pos:pos + nhead])
        pos += nhead
        blob = bytes(data[pos:pos + nblob])
        pos += nblob
        arrays = []
        for code, n in (("Q", nmembers + 1), ("I", nmembers), ("I", nstarts)):
            a = array(code)
            a.frombytes(data[pos:pos + n * a.itemsize])
            pos += n * a.itemsize
            arrays.append(a)
        return cls(shards, blob, *arrays)


def sample_key(name):
    """WebDataset's sample key: the name up to the first dot of its last component."""
    slash = name.rfind("/") + 1
    dot = name.find(".", slash)
    return name if dot < 0 else name[:dot]


class _Builder:
    def __init__(self, spec):
        self.keep = spec.member_filter()
        self.by_sample = spec.group == "sample"
        self.shards = []
        self.blob = bytearray()
        self.offsets = array("Q", [0])
        self.shard_of = array("I")
        self.starts = array("I")

    def add_shard(self, name, files):
        """`files`: the shard's regular files, sorted."""
        keep = self.keep
        files = [f for f in files if keep is None or keep(f)]
        if not files:
            return
        si = len(self.shards)
        self.shards.append(name)
        if self.by_sample:
            groups = {}
            for f in files:
                groups.setdefault(sample_key(f), []).append(f)
            runs = groups.values()
        else:
            runs = ([f] for f in files)
        for run in runs:
            self.starts.append(len(self.shard_of))
            for f in run:
                self.blob += f.encode() + b"\0"
                self.offsets.append(len(self.blob))
                self.shard_of.append(si)

    def done(self):
        self.starts.append(len(self.shard_of))
        return Dataset(self.shards, bytes(self.blob), self.offsets, self.shard_of, self.starts)


def _expanded(backend, bucket, prefix, shard=None):
    """(shard name, [its files]) of every shard under `prefix`, in name order. `shard`: the
    shard a prefix inside it (`s.tar/`) lists, whose own entry the listing leaves out."""
    token, files = "", []
    while True:
        page, token = backend.list_expanded(bucket, prefix=prefix, page_size=_PAGE, token=token)
        for attrs, flags in page:
            if flags & IN_ARCHIVE:
                if shard is not None and attrs.name.startswith(shard + "/"):
                    files.append(attrs.name[len(shard) + 1:])
            elif flags & IS_ARCHIVE:
                if shard is not None:
                    yield shard, files
                shard, files = attrs.name, []
        if not token:
            break
    if shard is not None:
        yield shard, files


def build(spec, storage):
    """The Dataset of `spec` over `storage` (a store Storage); NotFound when the bucket or a
    named shard is missing."""
    backend = storage.backend(spec.provider, spec.bucket)
    backend.require_bucket(spec.bucket)
    b = _Builder(spec)
    kind, value = next(iter(spec.shards.items()))
    if kind == "prefix":
        for name, files in _expanded(backend, spec.bucket, value):
            b.add_shard(name, files)
    elif kind == "template":
        wanted = set(Template(value))
        literal = Template(value).parts[0]
        found = {name: files for name, files in _expanded(backend, spec.bucket, literal)
                 if name in wanted}
        for name in Template(value):
            if name in found:
                b.add_shard(name, found.pop(name))
    else:
        for name in value:
            try:
                backend.stat(spec.bucket, name)
            except ObjectNotFound:
                raise NotFound(f"epoch plan: shard {spec.provider}://{spec.bucket}/{name} "
                               "does not exist") from None
            for listed, files in _expanded(backend, spec.bucket, name + "/", shard=name):
                if listed == name:
                    b.add_shard(name, files)
    ds = b.done()
    if not ds.samples:
        raise NotFound(f"epoch plan: no samples: the selected shards of "
                       f"{spec.provider}://{spec.bucket} hold no matching files")
    return ds
