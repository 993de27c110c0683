"""The consistency contract of docs/consistency.md, checked over a recorded history.

A history is a list of `Op`s on named objects: writes (`put`, `delete`) with the interval the
client saw and whether they were acknowledged, and reads (a GET, an item of a GetBatch, a
holder's copy) with the state they returned. The checker needs no model of the cluster: the
contract is stated in terms a client observes.

- A state is an object's version id, or ABSENT. The states a name may have at time t are those
  of its writes (and the initial ABSENT) that no acknowledged write *strictly after them*
  (started after they ended) has completed before t. A write that failed with 5xx or timed out
  may or may not have taken effect: it may be read, but it supersedes nothing.
- A read is correct when the state it returned may be had at its start (and was written before
  it ended). Otherwise it is a violation, named by what superseded the state it returned: a
  delete (the delete came back), a put over a version (a stale version: a lost overwrite when
  it is the final state), a put over ABSENT (an acknowledged write lost).
- Bytes matching no version of the name are a violation on their own (a mixed or corrupt item).
- A valid write refused with a 4xx is a violation on its own: a fault must be a retryable 503
  (the write counts as unknown: it may have taken effect).
- After healing: every node answers the same state, one the name may have at the end; every
  holder's copy is that state, and there are at least `copies` of it.
"""
from collections import Counter, defaultdict
from dataclasses import dataclass

ABSENT = None

# violation kinds, as the report names them
STALE = "stale read (an older version after a newer one was acknowledged)"
LOST_OVERWRITE = "lost overwrite (an older version after healing)"
RESURRECTED = "deleted object came back"
LOST_WRITE = "acknowledged write not found"
PHANTOM = "read a version never written to this name (or not yet)"
MIXED = "bytes of no single version (mixed or corrupt item)"
DIVERGED = "copies differ after healing"
FEW_COPIES = "fewer copies than the bucket keeps"
UNREADABLE = "not readable after healing"
REFUSED = "valid write refused with a 4xx (a fault must be a retryable 503)"


@dataclass(frozen=True)
class Op:
    kind: str                 # "put", "delete" or "read"
    key: str
    start: float
    end: float
    ok: object = True         # writes: True acknowledged, False refused (no effect), None unknown
    vid: object = ABSENT      # put: the version written; read: the version read (ABSENT: 404)
    via: str = ""             # who served it (for the report)
    bad: str = ""             # read: what the bytes were when they match no version;
                              # write: the 4xx a valid write was refused with


@dataclass(frozen=True)
class Violation:
    kind: str
    key: str
    detail: str
    at: object = None         # when the read that shows it started (None: after healing)

    def __str__(self):
        return f"{self.kind}: {self.key}: {self.detail}"


def _initial(key):
    """The state of every name before the history: ABSENT, as if deleted at -inf."""
    return Op("delete", key, float("-inf"), float("-inf"), via="initial state")


class Checker:
    def __init__(self, ops):
        self.writes = defaultdict(list)
        self.reads = []
        self.refused = []
        for op in ops:
            if op.kind == "read":
                self.reads.append(op)
                continue
            if op.bad:
                self.refused.append(op)
            if op.ok is not False:
                self.writes[op.key].append(op)
        self._sup = {}

    def _superseded_by(self, c):
        """The acknowledged write strictly after `c` that completed first (None if none)."""
        if c not in self._sup:
            later = [o for o in self.writes[c.key] if o.ok is True and o.start > c.end]
            self._sup[c] = min(later, key=lambda o: o.end, default=None)
        return self._sup[c]

    def _candidates(self, key, state):
        if state is ABSENT:
            return [_initial(key)] + [o for o in self.writes[key] if o.kind == "delete"]
        return [o for o in self.writes[key] if o.kind == "put" and o.vid == state]

    def allowed(self, key, state, start, end=float("inf")):
        """Whether `key` may be in `state` for a read over [start, end]."""
        return any(c.start < end and (self._superseded_by(c) is None or
                                      self._superseded_by(c).end >= start)
                   for c in self._candidates(key, state))

    def _why(self, key, state, start, end, final):
        """The violation a read of `state` over [start, end] is."""
        cands = [c for c in self._candidates(key, state) if c.start < end]
        if not cands:
            return Violation(PHANTOM, key, f"read {state!r}")
        # the newest candidate explains best what should have been read instead
        c = max(cands, key=lambda o: o.end)
        o = self._superseded_by(c)
        if state is ABSENT:
            kind = LOST_WRITE
        elif o.kind == "delete":
            kind = RESURRECTED
        else:
            kind = LOST_OVERWRITE if final else STALE
        after = f"{o.kind} {o.vid!r}" if o.kind == "put" else "delete"
        return Violation(kind, key, f"read {state!r} although {after} (via {o.via or '?'}, "
                                    f"done at {o.end:.3f}) was acknowledged")

    def check_writes(self):
        """Violations among the recorded writes: valid ones refused with a 4xx."""
        return [Violation(REFUSED, op.key, f"{op.kind} via {op.via}: {op.bad}", op.start)
                for op in self.refused]

    def check_reads(self):
        """Violations among the recorded reads."""
        out = []
        for r in self.reads:
            if r.bad:
                out.append(Violation(MIXED, r.key, f"via {r.via}: {r.bad}", r.start))
            elif not self.allowed(r.key, r.vid, r.start, r.end):
                v = self._why(r.key, r.vid, r.start, r.end, final=False)
                out.append(Violation(v.kind, v.key, f"{v.detail}; read via {r.via} at "
                                                    f"{r.start:.3f}-{r.end:.3f}", r.start))
        return out

    def check_final(self, key, answers, copies=None, holders=None):
        """Violations of the state of `key` after healing. `answers`: {node: state} read
        through each node's public API; `holders`: {node: state} of each node's own copy
        (ABSENT where it holds none), checked against `copies` when given."""
        out = []
        for node, state in sorted(answers.items(), key=lambda kv: str(kv[0])):
            if not self.allowed(key, state, float("inf")):
                v = self._why(key, state, float("inf"), float("inf"), final=True)
                out.append(Violation(v.kind, key, f"{v.detail}; node {node} answers it"))
        if len(set(answers.values())) > 1:
            out.append(Violation(DIVERGED, key, f"nodes answer differently: {answers}"))
        if holders is not None:
            held = Counter(s for s in holders.values() if s is not ABSENT)
            if len(held) > 1:
                out.append(Violation(DIVERGED, key, f"copies: {holders}"))
            final = Counter(answers.values()).most_common(1)[0][0] if answers else ABSENT
            if copies and final is not ABSENT and held[final] < copies:
                out.append(Violation(FEW_COPIES, key, f"{held[final]} of {copies} copies of "
                                                      f"{final!r}: {holders}"))
        return out


def summary(violations):
    """{kind: count}, for the report."""
    return dict(Counter(v.kind for v in violations))
