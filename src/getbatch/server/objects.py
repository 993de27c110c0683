"""Object API: PUT (whole or append/flush), GET (whole, Range, archived file), HEAD (also of
an archived file), DELETE.

Whole-object GETs go out as a file-like source so gunicorn sends them with sendfile (small
ones as bytes); ranges and archived files are bounded iterators over the very version
opened, so no WSGI server can send more than promised, and a concurrent PUT cannot mix two
versions into one response. An archived file streams from its shard chunk by chunk, whatever
its size; what it must decompress is limited by `max_inflate` (checked before the status line
where possible). A failure after the status line (a CRC-32 mismatch, max_inflate, a source
that shrank) closes the connection (the worker guards streamed bodies): the client sees
fewer bytes than Content-Length. Where the object or shard is held (here or, on a cluster,
another node the request is forwarded to) is the backend's business.
"""
import dataclasses

import falcon

from ..archive import InflateBudget
from ..cluster.peers import STAMP_HEADER
from ..store import validate_archpath
from ..store.archived import find_archived
from ..store.errors import InvalidName, ObjectNotFound
from .request_parts import body_stream, bucket_backend
from .errors import AISError

# Whole objects up to this size leave as bytes: one pread and one send cost less than
# gunicorn's sendfile path (an lseek, an fstat, a poller built per call, the sendfile, two
# more lseeks), about half at 4 KiB and even at 64 KiB (bench/RESULTS.md, S2)
_SMALL = 32 << 10


def object_name(req, obj):
    """The object name of the URL, refused when it is not valid UTF-8: Falcon replaces
    undecodable bytes with U+FFFD, which would store (and then serve) another name."""
    if "\ufffd" in obj:
        try:
            req.env.get("PATH_INFO", "").encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            raise InvalidName("object name", obj, "not valid UTF-8") from None
    return obj


def _header_safe(text):
    return text.isascii() and text.isprintable()


def _attr_headers(resp, attrs, provider):
    resp.set_header("Ais-Present", "true")
    # The SDK fills in the name itself when it is absent; a header can carry only Latin-1,
    # and clients decode it as such, so other names are better left out than garbled.
    if _header_safe(attrs.name):
        resp.set_header("Ais-Name", attrs.name)
    resp.set_header("Ais-Bucket-Name", attrs.bucket)
    resp.set_header("Ais-Bucket-Provider", provider)
    resp.set_header("Ais-Atime", str(attrs.atime_ns))
    resp.set_header("Ais-Location", "t[local]")
    if attrs.version:
        resp.set_header("Ais-Version", attrs.version)
    if attrs.cksum_value:
        resp.set_header("Ais-Checksum-Type", attrs.cksum_type)
        resp.set_header("Ais-Checksum-Value", attrs.cksum_value)
    if attrs.stamp:
        resp.set_header(STAMP_HEADER, attrs.stamp)


def _byte_range(req, size):
    """(start, count) of the request's single `Range`, via Falcon's parser; 416 when it
    cannot be satisfied for an object of `size` bytes."""
    try:
        rng = req.range
    except falcon.HTTPInvalidHeader:
        rng = None
    if rng is None or req.range_unit != "bytes":
        raise AISError(416, f"invalid or multi-part range {req.get_header('Range')!r}: expecting "
                            "one bytes=a-b range", headers={"Content-Range": f"bytes */{size}"})
    first, last = rng
    if first < 0:  # suffix: the last -first bytes
        first, last = max(0, size + first), size - 1
    elif last < 0 or last >= size:
        last = size - 1
    if first >= size or first > last:
        raise AISError(416, f"range {req.get_header('Range')!r} not satisfiable for an object of "
                            f"{size} bytes", headers={"Content-Range": f"bytes */{size}"})
    return first, last - first + 1


def _refuse_range(req):
    if req.get_header("Range") is not None:
        raise AISError(416, "a Range on a file inside a shard is not supported (use GetBatch "
                            "start/length)")


class _Closing:
    """`chunks` as a WSGI body that closes `source` when the server is done with it (a
    generator's `finally` would not run for a body that is never iterated)."""

    def __init__(self, chunks, source):
        self.chunks = chunks
        self.source = source

    def __iter__(self):
        return iter(self.chunks)

    def close(self):
        self.source.close()


class Object:
    """/v1/objects/<bucket>/<object path>; with `peer`, /v1/_peer/objects/...: a node's own
    share, where writes may carry the stamp of the version they copy (cluster/share.py)."""

    def __init__(self, storage, config, peer=False):
        self.storage = storage
        self.config = config
        self.peer = peer

    def on_put(self, req, resp, bucket, obj):
        backend, bucket = bucket_backend(self.storage, req, bucket)
        obj = object_name(req, obj)
        length = req.content_length
        body = body_stream(req)
        kind = req.get_param("append_type")
        if kind is None and self.peer:
            attrs = backend.put(bucket, obj, body, length, req.get_header(STAMP_HEADER))
            if attrs is not None and attrs.stamp:
                resp.set_header(STAMP_HEADER, attrs.stamp)
        elif kind is None:
            backend.put(bucket, obj, body, length)
        elif kind == "append":
            handle = backend.append(bucket, obj, req.get_param("append_handle") or "", body,
                                    length)
            resp.set_header("Ais-Append-Handle", handle)
        elif kind == "flush":
            backend.flush(bucket, obj, req.get_param("append_handle") or "")
        else:
            raise AISError(400, f'invalid append_type {kind!r} (expecting append or flush)')

    def on_get(self, req, resp, bucket, obj):
        backend, bucket = bucket_backend(self.storage, req, bucket)
        obj = object_name(req, obj)
        archpath = req.get_param("archpath")
        resp.content_type = "application/octet-stream"
        if archpath:
            self._get_archived(req, resp, backend, bucket, obj, archpath)
            return
        # size and headers from the very version sent, even if the object is replaced meanwhile
        try:
            src, attrs = backend.open(bucket, obj)
        except ObjectNotFound:
            found = self._find_archived(backend, bucket, obj, backend.open_archived)
            if found is None:
                raise
            self._send_archived(req, resp, found[0])
            return
        try:
            _attr_headers(resp, attrs, backend.provider)
            if req.get_header("Range") is None:
                if attrs.size <= _SMALL:
                    data = src.pread(attrs.size, 0)
                    if len(data) != attrs.size:
                        raise OSError(f"{backend.provider}://{bucket}/{obj} shrank while being read")
                    resp.data = data
                    src.close()
                    return
                resp.content_length = attrs.size
                resp.stream = src if src.fileno() is not None else _Closing(
                    src.chunks(0, attrs.size), src)
                return
            start, count = _byte_range(req, attrs.size)
        except BaseException:
            src.close()
            raise
        resp.status = falcon.HTTP_206
        resp.content_range = (start, start + count - 1, attrs.size)
        resp.content_length = count
        resp.stream = _Closing(src.chunks(start, count), src)

    def _budget(self):
        return InflateBudget(self.config.max_inflate)

    def _get_archived(self, req, resp, backend, bucket, obj, archpath):
        _refuse_range(req)
        if req.get_param("archregx"):
            raise AISError(400, "archregx is not supported: name one archived file with archpath")
        validate_archpath(archpath)
        self._send_archived(req, resp, backend.open_archived(bucket, obj, archpath,
                                                             self._budget()))

    def _find_archived(self, backend, bucket, obj, probe):
        """(probe's result, shard name, archpath) when `obj` names a file inside a shard
        object (`shard.zip/x.wav`, the rule GetBatch follows too), else None. `probe`:
        the backend's open_archived or stat_archived."""
        if "/" not in obj:
            return None
        budget = self._budget()
        return find_archived(obj, lambda shard, path: probe(bucket, shard, path, budget))

    def _send_archived(self, req, resp, f):
        """Send the ArchivedFile `f` (taken over: closed once sent or on error). A file of up
        to `window` bytes is read whole before the status line, so damage found in it (a bad
        CRC-32, offset or size) is a 400 naming the shard; a bigger one streams, and damage
        found in it mid-stream can only cut the response short."""
        try:
            _refuse_range(req)
            if f.size <= self.config.window:
                resp.data = b"".join(f.chunks())
            else:
                resp.content_length = f.size
                resp.stream = _Closing(f.chunks(), f)
                return
        except BaseException:
            f.close()
            raise
        f.close()

    def on_head(self, req, resp, bucket, obj):
        backend, bucket = bucket_backend(self.storage, req, bucket)
        obj = object_name(req, obj)
        archpath = req.get_param("archpath")
        if archpath:  # what GET with this archpath would send
            validate_archpath(archpath)
            attrs = backend.stat_archived(bucket, obj, archpath, self._budget())
        else:
            try:
                attrs = backend.stat(bucket, obj)
            except ObjectNotFound:
                found = self._find_archived(backend, bucket, obj, backend.stat_archived)
                if found is None:
                    raise
                attrs = found[0]
        _attr_headers(resp, dataclasses.replace(attrs, name=obj), backend.provider)
        resp.content_length = attrs.size

    def on_delete(self, req, resp, bucket, obj):
        backend, bucket = bucket_backend(self.storage, req, bucket)
        if not self.peer:
            backend.delete(bucket, object_name(req, obj))
            return
        stamp, existed = backend.delete(bucket, object_name(req, obj),
                                        req.get_header(STAMP_HEADER),
                                        req.get_param_as_bool("keep", default=False))
        resp.set_header(STAMP_HEADER, stamp)
        resp.set_header("Ais-Present", "true" if existed else "false")
