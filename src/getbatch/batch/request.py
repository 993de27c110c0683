"""Parse and validate a GetBatch request (AIS `MossReq`) before anything is sent.

Accepts the bare MossReq the SDK sends and the `{"action": "getbatch", "value": ...}`
wrapper of curl examples. JSON keys match case-insensitively (as AIS's decoder does).
Beyond the reference: `mime` is case-insensitive and `application/gzip` means .tar.gz.
"""
import base64
import binascii
import functools
import re
from typing import Literal, Optional

import msgspec

from ..store.errors import InvalidName
from ..store.names import validate_archpath, validate_object_name
from ..store.providers import PROVIDERS, normalize_provider
from .errors import BadRequest

_json = msgspec.json.Decoder()

DEFAULT_MAX_ENTRIES = 100_000
_REQ_KEYS = ("in", "mime", "coer", "onob", "strm", "coloc", "cksum")


class MossIn(msgspec.Struct, gc=False):
    """One `in[]` entry (untracked by the cyclic GC: a 10,000-entry batch would otherwise
    trigger collections while it is planned). After `parse`, `bucket`/`provider` are resolved and `opaque` is
    standard base64 (or None)."""

    objname: Optional[str] = None
    bucket: Optional[str] = None
    provider: Optional[str] = None
    uname: Optional[str] = None
    archpath: Optional[str] = None
    opaque: Optional[str] = None
    start: int = 0
    length: int = 0         # 0 = whole, -1 = to EOF, >0 = exactly


class _WireReq(msgspec.Struct):
    """The common, well-formed request decoded in one C pass; anything else (other key
    case, the ActionMsg wrapper, wrong types) takes the slower path that explains errors."""

    in_: Optional[list[MossIn]] = msgspec.field(name="in", default=None)
    mime: Optional[str] = None
    coer: bool = False
    onob: bool = False
    strm: bool = False
    cksum: bool = False


_fast = msgspec.json.Decoder(_WireReq)
_IN_KEYS = MossIn.__struct_fields__


class _NameIn(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    objname: str


# a Literal decodes to one shared str, where a str field would be a new str per entry
_Provider = Optional[Literal[tuple(PROVIDERS)]]  # type: ignore[valid-type]  # built from the list


def _bucket_in(bucket_type):
    return msgspec.defstruct("_BucketIn", [("objname", str), ("bucket", bucket_type, None),
                                           ("provider", _Provider, None)],
                             gc=False, forbid_unknown_fields=True)


def _plain_req(entry):
    return msgspec.json.Decoder(msgspec.defstruct("_PlainReq", [
        ("in_", list[entry], msgspec.field(name="in")), ("mime", Optional[str], None),
        ("coer", bool, False), ("onob", bool, False), ("strm", bool, False),
        ("cksum", bool, False)]))


# Entries that name only objects (what the SDK and most clients send) decode into the
# smallest struct that holds them, the names only kept (see Entries): the request of a
# 100,000-entry batch costs its names and little more.
_plain = (_plain_req(_NameIn), _plain_req(_bucket_in(Optional[str])))
_BIG_BODY = 1 << 16         # worth a decoder of its own bucket (a few ms, then cached)
_FIRST_BUCKET = re.compile(rb'"bucket"\s*:\s*("(?:[^"\\]|\\.)*")')


def _decoders(body):
    """The compact decoders to try on `body`: for a big one first a decoder whose bucket is
    the first entry's, so that a batch of one bucket does not hold a bucket str per entry
    (if the guess is wrong, the decode fails and the next decoder is tried)."""
    if len(body) < _BIG_BODY:
        return _plain
    m = _FIRST_BUCKET.search(body)
    if m is None:
        return _plain
    try:
        bucket = msgspec.json.decode(m.group(1), type=str)
    except msgspec.DecodeError:
        return _plain
    return (_bucket_decoder(bucket),) + _plain


# A memo of a pure function, not state: a decoder is immutable and the same for every caller,
# so apps sharing it see nothing of each other; bounded, and thread-safe as lru_cache is.
@functools.lru_cache(maxsize=64)
def _bucket_decoder(bucket):
    """A decoder of plain requests whose `bucket` is a Literal of `bucket`."""
    return _plain_req(_bucket_in(Optional[Literal[bucket]]))


class Entries:
    """The entries of a request whose every entry is a whole object of one bucket: the names
    in a list, a MossIn built for each entry when asked."""

    __slots__ = ("names", "bucket", "provider")

    def __init__(self, names, bucket, provider):
        self.names = names
        self.bucket = bucket
        self.provider = provider

    def __len__(self):
        return len(self.names)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [MossIn(n, self.bucket, self.provider) for n in self.names[i]]
        return MossIn(self.names[i], self.bucket, self.provider)

    def __iter__(self):
        b, p = self.bucket, self.provider
        for n in self.names:
            yield MossIn(n, b, p)


def subset(entries, indexes):
    """The entries at `indexes`, as compact as `entries` are."""
    if isinstance(entries, Entries):
        names = entries.names
        return Entries([names[i] for i in indexes], entries.bucket, entries.provider)
    return [entries[i] for i in indexes]


def _plain_entries(body):
    """(Entries, mime, coer, onob, strm, cksum) of a request whose entries name whole objects of one
    bucket, or None. The decoded structs become the list of names in place (each freed as
    its slot takes its name), so the peak is the body and one struct per entry."""
    for dec in _decoders(body):
        try:
            w = dec.decode(body)
        except (msgspec.DecodeError, RecursionError):
            continue
        ins = w.in_
        if not ins:
            return None
        first = ins[0]
        bucket = provider = None   # a bare name list names neither
        if type(first) is not _NameIn:
            bucket, provider = first.bucket, first.provider
            for e in ins:
                if e.bucket != bucket or e.provider != provider:
                    return None
        for i, e in enumerate(ins):
            ins[i] = e.objname
        return Entries(ins, bucket, provider), w.mime, w.coer, w.onob, w.strm, w.cksum
    return None


class MossReq:
    __slots__ = ("entries", "mime", "coer", "onob", "strm", "cksum")

    def __init__(self, entries, mime, coer, onob, strm, cksum=False):
        """`cksum`: every output entry carries its xxhash64 (batch/integrity.py)."""
        self.entries = entries
        self.mime = mime
        self.coer = coer
        self.onob = onob
        self.strm = strm
        self.cksum = cksum


def normalize_mime(mime) -> str:
    """Output format name ('tar', 'tgz', 'tar.lz4', 'zip') for a MossReq `mime`."""
    if mime is None:
        return "tar"
    if not isinstance(mime, str):
        raise BadRequest(f"invalid mime type {mime!r}: expecting a string such as \".tar\"")
    m = mime.strip().lower()
    if m == "":
        return "tar"
    if "tar.lz4" in m or m in ("lz4", ".lz4", "x-lz4", "application/x-lz4"):
        return "tar.lz4"
    if "tar.gz" in m or "tgz" in m or m in ("gz", ".gz", "gzip", "application/gzip", "application/x-gzip"):
        return "tgz"
    if "zip" in m:
        return "zip"
    if "tar" in m:
        return "tar"
    raise BadRequest(f'unknown mime type "{mime}" (expecting .tar, .tgz, .tar.gz, .tar.lz4 or .zip)')


def _lower_keys(d, known):
    """Map keys to their canonical lower-case names; unknown keys are dropped, as in AIS."""
    if all(k in known for k in d):
        return d
    out = {}
    for k, v in d.items():
        lk = k.lower() if isinstance(k, str) else k
        if lk in known and lk not in out:
            out[lk] = v
    return out


def _bool(v, field):
    if v is None:
        return False
    if isinstance(v, bool):
        return v
    raise BadRequest(f'invalid "{field}": expecting true or false, got {v!r}')


def _int(v, field, objname):
    if v is None:
        return 0
    if isinstance(v, bool) or not isinstance(v, int):
        raise BadRequest(f'invalid "{field}" {v!r} for object "{objname}": expecting an integer')
    return v


def _opaque(v, objname):
    if v is None or v == "":
        return None
    if not isinstance(v, str):
        raise BadRequest(f'invalid "opaque" for object "{objname}": expecting base64 text')
    padded = v + "=" * (-len(v) % 4)
    try:
        raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f'invalid "opaque" for object "{objname}": not valid base64')
    return base64.b64encode(raw).decode("ascii")


def _parse_uname(uname, objname):
    """`<provider>/@<ns-uuid>#<ns-name>/<bucket>/` -> (provider, bucket)."""
    parts = uname.split("/") if isinstance(uname, str) else []
    if len(parts) != 4 or parts[3] != "" or not parts[1].startswith("@") or not parts[2]:
        raise BadRequest(f'invalid uname "{uname}" for object "{objname}": '
                         'expecting a bucket uname like "ais/@#/mybucket/"')
    return normalize_provider(parts[0]), parts[2]


def decode_body(body: bytes):
    """The MossReq as a dict, unwrapping the ActionMsg form."""
    if not body or not body.strip():
        raise BadRequest("moss: empty input (expecting a JSON MossReq with a non-empty \"in\" list)")
    try:
        doc = _json.decode(body)
    except msgspec.DecodeError as exc:
        raise BadRequest(f"moss: malformed JSON request: {exc}")
    except RecursionError:
        raise BadRequest("moss: malformed JSON request: nested too deeply") from None
    if not isinstance(doc, dict):
        raise BadRequest("moss: malformed JSON request: expecting an object")
    lowered = {k.lower(): v for k, v in doc.items() if isinstance(k, str)}
    if "in" not in lowered and isinstance(lowered.get("value"), dict):
        action = lowered.get("action")
        if action not in (None, "", "getbatch"):
            raise BadRequest(f'moss: unexpected action "{action}" (expecting "getbatch")')
        doc = lowered["value"]
    return _lower_keys(doc, _REQ_KEYS)


def _entry_from_dict(i, e):
    if not isinstance(e, dict):
        raise BadRequest(f"moss: in[{i}] must be an object")
    e = _lower_keys(e, _IN_KEYS)
    objname = e.get("objname")
    for field in ("bucket", "provider", "uname", "archpath", "opaque"):
        v = e.get(field)
        if v is not None and not isinstance(v, str):
            raise BadRequest(f'invalid "{field}" {v!r} for object "{objname}" (in[{i}]): expecting a string')
    return MossIn(objname, e.get("bucket"), e.get("provider"), e.get("uname"), e.get("archpath"),
                  e.get("opaque"), _int(e.get("start"), "start", objname),
                  _int(e.get("length"), "length", objname))


def _decode(body):
    """(entries, mime, coer, onob, strm, cksum): the compact decode, the fast typed one, else the
    explaining one."""
    plain = _plain_entries(body)
    if plain is not None:
        return plain
    try:
        w = _fast.decode(body)
        if w.in_ and all(e.objname is not None for e in w.in_):
            return w.in_, w.mime, w.coer, w.onob, w.strm, w.cksum
    except (msgspec.DecodeError, RecursionError):
        pass
    doc = decode_body(body)
    ins = doc.get("in")
    if not ins:
        raise BadRequest("moss: empty input (expecting a non-empty \"in\" list)")
    if not isinstance(ins, list):
        raise BadRequest('moss: "in" must be a list of entries')
    entries = [_entry_from_dict(i, e) for i, e in enumerate(ins)]
    return (entries, doc.get("mime"), _bool(doc.get("coer"), "coer"), _bool(doc.get("onob"), "onob"),
            _bool(doc.get("strm"), "strm"), _bool(doc.get("cksum"), "cksum"))


def parse(body: bytes, default_bucket=None, default_provider="ais",
          max_entries=DEFAULT_MAX_ENTRIES) -> MossReq:
    """Validate everything that can be validated without touching storage.

    The entry count is bounded before the body is decoded: every entry is a JSON object, so
    a body holding more than `max_entries` + 2 `{` (the request, and the ActionMsg wrapper)
    is refused without building its entries (a brace inside a name counts too, so a request
    right at the limit whose names hold braces may be refused: raise `max_entries`)."""
    if body.count(b"{") > max_entries + 2:
        raise BadRequest(f"moss: too many entries: the request names more than {max_entries} "
                         "(setting max_entries)")
    entries, mime, coer, onob, strm, cksum = _decode(body)
    if len(entries) > max_entries:
        raise BadRequest(f"moss: too many entries: {len(entries)} (max {max_entries}, "
                         "setting max_entries)")
    mime = normalize_mime(mime)
    if isinstance(entries, Entries):
        _check_plain(entries, default_bucket, default_provider)
        return MossReq(entries, mime, coer, onob, strm, cksum)
    for i, e in enumerate(entries):
        objname = e.objname
        if not isinstance(objname, str):
            raise BadRequest(f'invalid object name {objname!r} in in[{i}]: expecting a string')
        try:
            validate_object_name(objname)
            if e.archpath:
                validate_archpath(e.archpath)
        except InvalidName as exc:
            if exc.what == "archpath":
                raise BadRequest(f'invalid archpath "{e.archpath}" (oname: "{objname}"): {exc.reason}')
            raise BadRequest(str(exc))
        if e.uname:
            e.provider, e.bucket = _parse_uname(e.uname, objname)
        elif e.bucket:
            e.provider = normalize_provider(e.provider) if e.provider else "ais"
        elif default_bucket:
            e.bucket = default_bucket
            e.provider = normalize_provider(e.provider) if e.provider else default_provider
        else:
            raise BadRequest(f'missing bucket specification for object "{objname}"')
        start, length = e.start, e.length
        if start < 0 or length < -1 or (start != 0 and length == 0):
            raise BadRequest(f"not satisfiable range [start={start}, length={length}] for object "
                             f'"{objname}": expecting start >= 0 and length > 0, or -1 to read to the end')
        if e.opaque:
            e.opaque = _opaque(e.opaque, objname)
        else:
            e.opaque = None
    return MossReq(entries, mime, coer, onob, strm, cksum)


def _check_plain(entries, default_bucket, default_provider):
    """`parse` for Entries: every name checked, the one bucket resolved once."""
    for objname in entries.names:
        try:
            validate_object_name(objname)
        except InvalidName as exc:
            raise BadRequest(str(exc))
    if entries.bucket:
        entries.provider = normalize_provider(entries.provider) if entries.provider else "ais"
    elif default_bucket:
        entries.bucket = default_bucket
        entries.provider = (normalize_provider(entries.provider) if entries.provider
                            else default_provider)
    else:
        raise BadRequest(f'missing bucket specification for object "{entries.names[0]}"')


def parse_coloc(value) -> int:
    if value in (None, ""):
        return 0
    try:
        n = int(value)
    except ValueError:
        raise BadRequest(f"invalid 'coloc={value}' (expecting 0, 1, or 2)")
    if n not in (0, 1, 2):
        raise BadRequest(f"invalid 'coloc={value}' (expecting 0, 1, or 2)")
    return n
