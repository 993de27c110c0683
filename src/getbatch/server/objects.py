"""Object API: PUT (whole or append/flush), GET (whole, Range, archived file), HEAD, DELETE.

Whole-object GETs go out as a file so gunicorn sends them with sendfile, small ones as
bytes; ranges and archived files are bounded readers so no WSGI server can send more than
promised.
"""
import os

from ..archive import MemberNotFound, open_shard
from ..store.names import validate_archpath
from .buckets import ais_bucket
from .errors import HTTPError

_CHUNK = 1 << 20
# Whole objects up to this size leave as bytes: one pread and one send cost less than
# gunicorn's sendfile path (an lseek, an fstat, a poller built per call, the sendfile, two
# more lseeks), about half at 4 KiB and even at 64 KiB (bench/RESULTS.md, S2)
_SMALL = 32 << 10


def _file_range(path, offset, length):
    """Yield exactly `length` bytes of `path` from `offset`."""
    with open(path, "rb", buffering=0) as f:
        while length > 0:
            data = os.pread(f.fileno(), min(length, _CHUNK), offset)
            if not data:
                raise OSError(f"{path} shrank while being read")
            offset += len(data)
            length -= len(data)
            yield data


def parse_range(header, size):
    """(start, count) for a single `bytes=a-b` / `a-` / `-n` range; 416 when unsatisfiable."""
    spec = header.strip()
    if not spec.startswith("bytes=") or "," in spec:
        raise HTTPError(416, f"invalid or multi-part range {header!r}: expecting one bytes=a-b range")
    a, _, b = spec[6:].partition("-")
    try:
        if a == "":
            n = int(b)
            if n <= 0:
                raise ValueError
            start, end = max(0, size - n), size - 1
        else:
            start = int(a)
            end = int(b) if b else size - 1
    except ValueError:
        raise HTTPError(416, f"invalid range {header!r}")
    end = min(end, size - 1)
    if start >= size or start > end or start < 0:
        raise HTTPError(416, f"range {header!r} not satisfiable for an object of {size} bytes",
                        headers={"Content-Range": f"bytes */{size}"})
    return start, end - start + 1


def _attr_headers(resp, attrs, bucket, name):
    resp.set_header("Ais-Present", "true")
    resp.set_header("Ais-Name", name)
    resp.set_header("Ais-Bucket-Name", bucket)
    resp.set_header("Ais-Bucket-Provider", "ais")
    resp.set_header("Ais-Atime", str(attrs.atime_ns))
    resp.set_header("Ais-Location", "t[local]")
    if attrs.version:
        resp.set_header("Ais-Version", str(attrs.version))
    if attrs.cksum_value:
        resp.set_header("Ais-Checksum-Type", attrs.cksum_type)
        resp.set_header("Ais-Checksum-Value", attrs.cksum_value)


class Object:
    """/v1/objects/<bucket>/<object path>."""

    def __init__(self, store):
        self.store = store

    def on_put(self, req, resp, bucket, obj):
        bucket = ais_bucket(req, bucket)
        length = req.content_length
        kind = req.get_param("append_type")
        if kind is None:
            self.store.put(bucket, obj, req.bounded_stream, length)
        elif kind == "append":
            handle = self.store.append(bucket, obj, req.get_param("append_handle") or "",
                                       req.bounded_stream, length)
            resp.set_header("Ais-Append-Handle", handle)
        elif kind == "flush":
            self.store.flush(bucket, obj, req.get_param("append_handle") or "")
        else:
            raise HTTPError(400, f'invalid append_type "{kind}" (expecting append or flush)')
        resp.status = 200

    def on_get(self, req, resp, bucket, obj):
        bucket = ais_bucket(req, bucket)
        archpath = req.get_param("archpath")
        rng = req.get_header("Range")
        resp.content_type = "application/octet-stream"
        if not archpath and not rng:
            # size and headers from the very file sent, even if the object is replaced meanwhile
            f, attrs = self.store.open_read(bucket, obj)
            _attr_headers(resp, attrs, bucket, obj)
            if attrs.size <= _SMALL:
                with f:
                    data = os.pread(f.fileno(), attrs.size, 0)
                if len(data) != attrs.size:
                    raise OSError(f"{attrs.path} shrank while being read")
                resp.data = data
                return
            resp.content_length = attrs.size
            resp.stream = f
            return
        attrs = self.store.stat(bucket, obj)
        if archpath:
            if rng:
                raise HTTPError(416, "a Range together with archpath is not supported")
            if req.get_param("archregx"):
                raise HTTPError(400, "archregx is not supported: name one archived file with archpath")
            validate_archpath(archpath)
            with open_shard(attrs.path, index_dir=self.store.index_dir, name=obj) as shard:
                try:
                    shard.lookup(archpath)
                except MemberNotFound:
                    raise HTTPError(404, f"{archpath} in ais://{bucket}/{obj} does not exist",
                                    "ErrObjNotFound") from None
                extent = shard.extent(archpath)
                if extent is None:
                    resp.data = shard.read(archpath)
                    return
            resp.content_length = extent[1]
            resp.stream = _file_range(attrs.path, extent[0], extent[1])
            return
        _attr_headers(resp, attrs, bucket, obj)
        start, count = parse_range(rng, attrs.size)
        resp.status = 206
        resp.set_header("Content-Range", f"bytes {start}-{start + count - 1}/{attrs.size}")
        resp.content_length = count
        resp.stream = _file_range(attrs.path, start, count)

    def on_head(self, req, resp, bucket, obj):
        bucket = ais_bucket(req, bucket)
        attrs = self.store.stat(bucket, obj)
        _attr_headers(resp, attrs, bucket, obj)
        resp.content_length = attrs.size

    def on_delete(self, req, resp, bucket, obj):
        bucket = ais_bucket(req, bucket)
        self.store.delete(bucket, obj)
        resp.status = 200
