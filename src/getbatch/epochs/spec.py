"""What a client registers as an epoch plan (`POST /v1/ml/epochs`), validated.

    {"bucket": B, "provider": "ais",
     "shards": {"names": [...]} | {"prefix": P} | {"template": "shard-{000..099}.tar"},
     "members": {"ext": [".jpg", ".cls"]} | {"regex": R}     (optional: all regular files)
     "group": "member" | "sample",
     "seed": S, "world_size": W, "batch_size": N, "drop_last": false,
     "shuffle": {"mode": "full"} | {"mode": "shard", "window": N} | {"mode": "none"}}

Every mistake is a 400 naming the field, before anything is listed.
"""
import re

from ..batch.errors import BadRequest
from ..jobs.template import Template, TemplateError
from ..store.errors import InvalidName
from ..store.names import validate_bucket_name, validate_object_name
from ..store.providers import normalize_provider

MAX_NAMES = 1_000_000     # shard names given one by one
MAX_WORLD = 1 << 16
MAX_BATCH = 100_000       # the most samples a batch may hold (max_entries bounds entries)
SHUFFLES = ("full", "shard", "none")
DEFAULT_WINDOW = 4096     # samples shuffled together in "shard" mode
_KEYS = {"bucket", "provider", "shards", "members", "group", "seed", "world_size",
         "batch_size", "drop_last", "shuffle"}


class Spec:
    """A validated plan request; `doc()` is its canonical JSON form (what is stored)."""

    __slots__ = ("bucket", "provider", "shards", "members", "group", "seed", "world_size",
                 "batch_size", "drop_last", "shuffle", "window")

    def doc(self):
        return {"bucket": self.bucket, "provider": self.provider, "shards": self.shards,
                "members": self.members, "group": self.group, "seed": self.seed,
                "world_size": self.world_size, "batch_size": self.batch_size,
                "drop_last": self.drop_last,
                "shuffle": ({"mode": self.shuffle, "window": self.window}
                            if self.shuffle == "shard" else {"mode": self.shuffle})}

    def member_filter(self):
        """A predicate on member names (None: every regular file)."""
        m = self.members
        if not m:
            return None
        if "ext" in m:
            exts = tuple(m["ext"])
            return lambda name: name.endswith(exts)
        return re.compile(m["regex"]).search


def check_int(doc, key, default, lo, hi, what="epoch plan"):
    """`doc[key]` (or `default`) if it is an integer in [lo, hi]; BadRequest naming it."""
    v = doc.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise BadRequest(f'{what}: invalid "{key}" {v!r}: expecting an integer from {lo} '
                         f"to {hi}")
    return v


def check_fields(doc, keys, what="epoch plan"):
    """BadRequest unless `doc` is a JSON object with no field outside `keys`."""
    if not isinstance(doc, dict):
        raise BadRequest(f"{what}: expecting a JSON object")
    unknown = set(doc) - keys
    if unknown:
        raise BadRequest(f"{what}: unknown field(s) {', '.join(sorted(unknown))} "
                         f"(expecting {', '.join(sorted(keys))})")


def _shards(v):
    if not isinstance(v, dict) or len(v) != 1:
        raise BadRequest('epoch plan: "shards" must be one of {"names": [...]}, {"prefix": P} '
                         'or {"template": T}')
    (kind, value), = v.items()
    if kind == "names":
        if not isinstance(value, list) or not value or len(value) > MAX_NAMES:
            raise BadRequest(f'epoch plan: "shards.names" must be a list of 1 to {MAX_NAMES} '
                             "object names")
        for name in value:
            if not isinstance(name, str):
                raise BadRequest(f'epoch plan: invalid shard name {name!r}: expecting a string')
            try:
                validate_object_name(name)
            except InvalidName as exc:
                raise BadRequest(f"epoch plan: {exc}") from None
        if len(set(value)) != len(value):
            raise BadRequest('epoch plan: "shards.names" names a shard more than once')
    elif kind == "prefix":
        if not isinstance(value, str):
            raise BadRequest('epoch plan: "shards.prefix" must be a string ("" for the whole '
                             "bucket)")
    elif kind == "template":
        try:
            t = Template(value)
        except TemplateError as exc:
            raise BadRequest(f"epoch plan: {exc}") from None
        if t.is_prefix:
            raise BadRequest(f'epoch plan: template "{value}" has no range such as {{000..099}}'
                             ' (use "prefix" to select by prefix)')
    else:
        raise BadRequest(f'epoch plan: unknown shard selection "{kind}" (expecting names, '
                         "prefix or template)")
    return {kind: value}


def _members(v):
    if v is None or v == {}:
        return None
    if not isinstance(v, dict) or len(v) != 1 or not ({"ext", "regex"} & set(v)):
        raise BadRequest('epoch plan: "members" must be {"ext": [".jpg", ...]} or '
                         '{"regex": R}')
    if "ext" in v:
        exts = v["ext"]
        if (not isinstance(exts, list) or not exts
                or not all(isinstance(e, str) and e for e in exts)):
            raise BadRequest('epoch plan: "members.ext" must be a non-empty list of name '
                             'endings such as ".jpg"')
        return {"ext": exts}
    try:
        re.compile(v["regex"])
    except (re.error, TypeError) as exc:
        raise BadRequest(f'epoch plan: invalid "members.regex" {v["regex"]!r}: {exc}') from None
    return {"regex": v["regex"]}


def _shuffle(v):
    """(mode, window)."""
    if v is None:
        return "full", 0
    if isinstance(v, str):
        v = {"mode": v}
    if not isinstance(v, dict) or v.get("mode") not in SHUFFLES or set(v) - {"mode", "window"}:
        raise BadRequest('epoch plan: "shuffle" must be {"mode": "full"}, {"mode": "shard", '
                         '"window": N} or {"mode": "none"}')
    if v["mode"] != "shard":
        return v["mode"], 0
    return "shard", check_int(v, "window", DEFAULT_WINDOW, 1, 1 << 24)


def parse_spec(doc):
    """The Spec of a decoded POST body; BadRequest naming what is wrong."""
    check_fields(doc, _KEYS)
    s = Spec()
    s.bucket = doc.get("bucket")
    if not isinstance(s.bucket, str):
        raise BadRequest('epoch plan: "bucket" must be a bucket name')
    try:
        validate_bucket_name(s.bucket)
    except InvalidName as exc:
        raise BadRequest(f"epoch plan: {exc}") from None
    provider = doc.get("provider") or "ais"
    if not isinstance(provider, str):
        raise BadRequest('epoch plan: "provider" must be a string such as "ais"')
    s.provider = normalize_provider(provider)
    if "shards" not in doc:
        raise BadRequest('epoch plan: missing "shards" ({"names": [...]}, {"prefix": P} or '
                         '{"template": T})')
    s.shards = _shards(doc["shards"])
    s.members = _members(doc.get("members"))
    s.group = doc.get("group", "member")
    if s.group not in ("member", "sample"):
        raise BadRequest(f'epoch plan: invalid "group" {s.group!r}: expecting "member" or '
                         '"sample"')
    s.seed = check_int(doc, "seed", 0, 0, (1 << 63) - 1)
    s.world_size = check_int(doc, "world_size", 1, 1, MAX_WORLD)
    s.batch_size = check_int(doc, "batch_size", None, 1, MAX_BATCH) if "batch_size" in doc else None
    if s.batch_size is None:
        raise BadRequest('epoch plan: missing "batch_size" (samples per batch of one rank)')
    s.drop_last = doc.get("drop_last", False)
    if not isinstance(s.drop_last, bool):
        raise BadRequest('epoch plan: "drop_last" must be true or false')
    s.shuffle, s.window = _shuffle(doc.get("shuffle"))
    return s
