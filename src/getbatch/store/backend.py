"""The storage interface: what the object API, listing and GetBatch planning need from a backend.

Every backend (the local data directory today; an S3-compatible store, an HTTP origin and, on a
cluster, the peer that owns an object later) implements `Backend`. The layers above (`batch`,
`server`) use nothing else: no paths, directory layouts or fds of one backend leak above `store`,
except that a `Source` may *offer* an fd so the emit loop can send it without copying.

A GetBatch request reads through one `BatchReader` per backend: it holds whatever per-request
state the backend needs (the local store's fd budget and checked directories) and opens each
shard once per request.
"""
import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from ..archive import InflateBudget, Shard
from .archived import ArchivedFile, open_shard_file
from .attrs import ObjectAttrs
from .errors import BucketNotFound, NotRemote, StoreError
from .names import validate_bucket_name

_CHUNK = 1 << 20


class Readable(Protocol):
    """What a backend stores from: a file, a request body, ..."""

    def read(self, n: int = -1, /) -> bytes: ...


class Source:
    """One version of one object, open for reading: its bytes stay those of the version that was
    opened even if the object is replaced meanwhile.

    A batch holds one per object, so implementations are small and untracked by the cyclic GC
    (msgspec structs with `gc=False` mixing this class in): thousands of tracked objects per
    request made the collector a visible share of a batch's CPU."""

    __slots__ = ()
    size: int
    lazy = False  # True when the source opens its data only when first read

    def fileno(self) -> int | None:
        """An fd holding the object's bytes at offset 0, for pread/sendfile, or None."""
        return None

    def pread(self, length: int, offset: int) -> bytes:
        """Up to `length` bytes from `offset` (fewer only at the end)."""
        raise NotImplementedError

    def chunks(self, offset: int, length: int) -> Iterator[bytes]:
        """Exactly `length` bytes from `offset`, in pieces of at most 1 MiB; raises OSError
        when the source ends early."""
        while length > 0:
            data = self.pread(min(length, _CHUNK), offset)
            if not data:
                raise OSError(f"object ended {length} bytes early (replaced while being read?)")
            offset += len(data)
            length -= len(data)
            yield data

    def close(self) -> None:
        pass

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Backend(ABC):
    """Buckets and objects of one provider. Names are validated by the backend; errors are the
    exceptions of `store.errors`."""

    provider = ""

    @property
    def remote(self) -> bool:
        """True when the bucket's objects are local copies of a remote store's (every provider
        but `ais`): the buckets prefetch and evict apply to."""
        return self.provider != "ais"

    # ---- buckets
    @abstractmethod
    def list_buckets(self) -> list[str]:
        """Names of the buckets, sorted."""

    @abstractmethod
    def has_bucket(self, name: str) -> bool:
        """True when the bucket exists (False also for an invalid name)."""

    def require_bucket(self, name: str) -> None:
        """Raise BucketNotFound (or InvalidName) unless the bucket exists."""
        validate_bucket_name(name)
        if not self.has_bucket(name):
            raise BucketNotFound(name, self.provider)

    @abstractmethod
    def create_bucket(self, name: str) -> None:
        """Create the bucket; BucketExists if it does."""

    @abstractmethod
    def destroy_bucket(self, name: str) -> None:
        """Delete the bucket and every object in it; BucketNotFound if missing."""

    def bucket_props(self, name: str) -> dict[str, Any]:
        """The bucket's properties (AIS `BucketProps` subset) as a dict."""
        self.require_bucket(name)
        return {"provider": self.provider}

    def set_bucket_props(self, name: str, props: dict[str, Any]) -> None:
        """Change bucket properties (AIS `set-bprops`); StoreError where none can be set."""
        self.require_bucket(name)
        raise StoreError(f"bucket properties of {self.provider}://{name} cannot be changed "
                         "on this node (mirror needs a cluster)")

    # ---- objects
    @abstractmethod
    def stat(self, bucket: str, name: str) -> ObjectAttrs:
        """ObjectAttrs of the object; ObjectNotFound if missing."""

    @abstractmethod
    def open(self, bucket: str, name: str) -> tuple[Source, ObjectAttrs]:
        """(Source, ObjectAttrs) of the current version; the caller closes the source."""

    @abstractmethod
    def put(self, bucket: str, name: str, stream: Readable,
            length: int | None = None) -> ObjectAttrs | None:
        """Store `length` bytes (or all, to EOF) of `stream.read` as the object, atomically:
        readers see the old version or the complete new one. Returns the new ObjectAttrs, or
        None when the store does not have them at hand (a cluster's, which stored the object
        on other nodes)."""

    @abstractmethod
    def append(self, bucket: str, name: str, handle: str, stream: Readable,
               length: int | None = None) -> str:
        """AIS append: add to session `handle` ("" starts one); returns the handle to go on."""

    @abstractmethod
    def flush(self, bucket: str, name: str, handle: str) -> ObjectAttrs | None:
        """Publish an append session as the object (atomic, like put); its ObjectAttrs, or
        None as put's."""

    @abstractmethod
    def delete(self, bucket: str, name: str) -> tuple[str, bool] | None:
        """Remove the object; ObjectNotFound if missing. A store that stamps its versions (a
        cluster node's) returns (the delete's stamp, whether the object was here)."""

    def prefetch(self, bucket: str, name: str) -> int:
        """Bring the object's current remote version into the local cache (a no-op when the
        cached copy is current); returns the bytes fetched. ObjectNotFound if missing.
        Remote backends implement it; the default refuses, as AIS does for its own buckets."""
        raise NotRemote("prefetch", bucket, self.provider)

    def evict(self, bucket: str, name: str) -> int:
        """Drop the object's cached copy, keeping the remote object; returns the bytes freed.
        ObjectNotFound if the object is not cached. Remote backends only."""
        raise NotRemote("evict", bucket, self.provider)

    @abstractmethod
    def list_objects(self, bucket: str, prefix: str = "", page_size: int = 0, token: str = "",
                     start_after: str = "", with_meta: bool = False) -> tuple[list[ObjectAttrs], str]:
        """One page: ([ObjectAttrs sorted by name], next_token); next_token "" on the last page.
        `token` is the previous page's next_token; names <= max(token, start_after) are skipped."""

    # ---- shards and batches
    @abstractmethod
    def open_shard(self, bucket: str, name: str, budget: InflateBudget | None = None) -> Shard:
        """The archive `Shard` of the object's current version (its index built or reused);
        ObjectNotFound if missing, ArchiveError if it is not a readable archive. `budget`:
        an archive InflateBudget charged with what decompression the shard does."""

    def index_shard(self, bucket: str, name: str, budget: InflateBudget | None = None) -> int:
        """Build (or find) the index of shard object `name` and keep it where later batches
        look for it; returns the shard's size. Errors as `open_shard`."""
        with self.open_shard(bucket, name, budget) as shard:
            shard.members()
            return shard.identity.size

    def shard_index_state(self, bucket: str, name: str) -> tuple[str, Any, int] | None:
        """(state, members, size) of shard object `name`'s index without building it (see
        archive.index_state); None where this backend keeps no index to look at."""
        return None

    def open_archived(self, bucket: str, name: str, archpath: str,
                      budget: InflateBudget | None = None) -> ArchivedFile:
        """The regular file `archpath` inside the shard object `name`, open for reading (an
        `archived.ArchivedFile`, whose size is known now). ObjectNotFound without the shard,
        MemberNotFound without the file, ArchiveError when the shard is not a readable archive
        or reading the file would decompress more than `budget` allows."""
        return open_shard_file(self.open_shard(bucket, name, budget), archpath,
                               f"{self.provider}://{bucket}/{name}")

    def stat_archived(self, bucket: str, name: str, archpath: str,
                      budget: InflateBudget | None = None) -> ObjectAttrs:
        """ObjectAttrs of the file `archpath` inside the shard object `name`: its size, the
        shard's times (the shard's version and checksum are not the file's); errors as
        `open_archived`."""
        with open_shard_file(self.open_shard(bucket, name, budget), archpath,
                             f"{self.provider}://{bucket}/{name}", check_budget=False) as f:
            size = f.size
        return dataclasses.replace(self.stat(bucket, name), size=size, version="",
                                   cksum_type="", cksum_value="")

    def list_expanded(self, bucket: str, prefix: str = "", page_size: int = 0, token: str = "",
                      start_after: str = "", with_meta: bool = False,
                      max_inflate: int = 0) -> tuple[list[tuple[ObjectAttrs, int]], str]:
        """One page of a listing with each shard followed by its files (the SDK's ARCH_DIR):
        ([(ObjectAttrs, flags)], next_token); see `archlist`."""
        from .archlist import list_expanded  # archlist builds on this interface
        return list_expanded(self, bucket, prefix, page_size, token, start_after, with_meta,
                             max_inflate)

    @abstractmethod
    def batch_reader(self, n_entries: int, budget: InflateBudget | None = None) -> "BatchReader":
        """A BatchReader for one GetBatch request naming up to `n_entries` items here."""



class BatchReader(ABC):
    """Per-request reads of one backend: sources by name, shards opened once per request."""

    def __init__(self, backend: Backend, budget: InflateBudget | None = None) -> None:
        self.backend = backend
        self.budget = budget
        self._shards: dict[tuple[str, str], Shard] = {}

    @abstractmethod
    def source(self, bucket: str, name: str) -> Source:
        """The Source of an object (ObjectNotFound if missing). The reader may open it now or
        when it is first read; `close()` releases whatever it opened."""

    def prepare(self, entries: Iterable[Any]) -> None:
        """Called once with the request entries this backend serves, before planning asks
        for any of them: a remote backend starts fetching them here. Errors surface later,
        from source() and shard(), so each is reported for its own entry."""

    def slot(self, src: Source, bucket: str, name: str) -> int | None:
        """What a plan may keep of `src` (a whole object this reader gave for (bucket, name))
        instead of the Source: an fd the plan now owns, -1 (LAZY: the plan opens it with
        `open_found` when sent), or None when only the Source itself can read it (the
        default: the plan keeps the Source)."""
        return None

    def open_found(self, bucket: str, name: str) -> int:
        """An fd of an object `slot` gave -1 for, when it is sent."""
        raise NotImplementedError(f"{type(self).__name__} keeps no object as a plan's column")

    def shard(self, bucket: str, name: str) -> Shard:
        key = (bucket, name)
        shard = self._shards.get(key)
        if shard is None:
            shard = self._shards[key] = self.backend.open_shard(bucket, name, self.budget)
        return shard

    def close(self) -> None:
        shards, self._shards = self._shards, {}
        memories = {}
        while shards:   # emptied as closed: their parsed indexes are let go before trimming
            shard = shards.popitem()[1]
            shard.close()
            memories[id(shard.memory)] = shard.memory
        for memory in memories.values():
            memory.trim()
