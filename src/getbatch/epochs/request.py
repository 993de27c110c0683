"""A GetBatch that names a step of an epoch plan instead of its entries.

    {"plan": ID, "epoch": E, "rank": R, "step": K,
     "world_size": W, "offset": O,     (optional: elastic resume, see order.py)
     "first": F,                       (optional: the batch from its F-th entry on)
     "ahead": A,                       (optional: steps to warm after this one, lookahead.py;
                                        0 by default)
     "mime": ..., "strm": ..., "coer": ..., "onob": ..., "cksum": ...}

becomes the MossReq of that batch: each sample's members, in epoch order, as archived files
of their shards, so the rest of the GetBatch path is the one every request takes. `first`
lets a client whose stream broke ask for the rest of the batch only.
"""
import msgspec

from ..batch.errors import BadRequest
from ..batch.request import MossIn, MossReq, normalize_mime, parse
from .order import step_range
from .spec import check_fields, check_int

AHEAD = 0          # steps a node warms after the one it serves by default (lookahead.py: off,
                   # as it measured no gain here, bench/RESULTS-training.md)
MAX_AHEAD = 16

_json = msgspec.json.Decoder()
_KEYS = {"plan", "epoch", "rank", "step", "world_size", "offset", "first", "ahead", "mime",
         "strm", "coer", "onob", "cksum"}


def is_epoch_request(body):
    """True when the body names a plan (a cheap look before any decoding)."""
    return b'"plan"' in body[:4096] and b'"in"' not in body[:4096]


def _int(doc, key, default, lo, hi):
    return check_int(doc, key, default, lo, hi, "epoch GetBatch")


def _bool(doc, key):
    v = doc.get(key, False)
    if not isinstance(v, bool):
        raise BadRequest(f'epoch GetBatch: "{key}" must be true or false')
    return v


class EpochStep:
    """Where a request is in its plan: what look-ahead needs to know the next steps."""

    __slots__ = ("rec", "epoch", "rank", "step", "world", "offset", "ahead")

    def __init__(self, rec, epoch, rank, step, world, offset, ahead=AHEAD):
        self.rec, self.epoch, self.rank, self.step = rec, epoch, rank, step
        self.world, self.offset, self.ahead = world, offset, ahead

    def entries(self, plans, step=None):
        """The MossIn entries of this step (or of another step of the same rank)."""
        spec = self.rec["spec"]
        ds, perm = plans.order(self.rec, self.epoch)
        start, stop = step_range(ds.samples, spec["batch_size"], self.world, self.rank,
                                 self.step if step is None else step, spec["drop_last"],
                                 self.offset)
        bucket, provider, shards = spec["bucket"], spec["provider"], ds.shards
        out = []
        for s in perm[start:stop]:
            for m in ds.sample_members(s):
                out.append(MossIn(shards[ds.shard_of[m]], bucket, provider,
                                  archpath=ds.member_name(m)))
        return out


def parse_epoch(body, plans, max_entries):
    """(MossReq, EpochStep) of an epoch GetBatch body."""
    try:
        doc = _json.decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise BadRequest(f"epoch GetBatch: malformed JSON request: {exc}") from None
    check_fields(doc, _KEYS, "epoch GetBatch")
    rec = plans.get(doc.get("plan"))
    spec = rec["spec"]
    world = _int(doc, "world_size", spec["world_size"], 1, 1 << 16)
    where = EpochStep(rec, _int(doc, "epoch", None, 0, (1 << 31) - 1),
                      _int(doc, "rank", None, 0, world - 1),
                      _int(doc, "step", None, 0, (1 << 40)),
                      world, _int(doc, "offset", 0, 0, 1 << 40),
                      _int(doc, "ahead", AHEAD, 0, MAX_AHEAD))
    entries = where.entries(plans)
    first = _int(doc, "first", 0, 0, len(entries))
    entries = entries[first:]
    if not entries:
        raise BadRequest(f'epoch GetBatch: "first" {first} leaves no entry of the batch')
    if len(entries) > max_entries:
        raise BadRequest(f"epoch GetBatch: the step holds {len(entries)} entries (max "
                         f"{max_entries}, setting max_entries)")
    return MossReq(entries, normalize_mime(doc.get("mime")), _bool(doc, "coer"),
                   _bool(doc, "onob"), _bool(doc, "strm"), _bool(doc, "cksum")), where


def parse_any(body, plans, bucket, provider, max_entries):
    """The MossReq of any GetBatch body (an epoch step, or entries) and its EpochStep (None
    for entries)."""
    if plans is not None and is_epoch_request(body):
        return parse_epoch(body, plans, max_entries)
    return parse(body, bucket, provider, max_entries=max_entries), None
