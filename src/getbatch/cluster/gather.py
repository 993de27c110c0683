"""The designated target (DT) of a cluster GetBatch: plan every entry where it lives, then
hand the output its remote items in request order.

Phase 1 (`plan`, before the status line): each entry goes to its HRW owner. Every remote
owner gets its sub-batch at once (peerwire.py), then this node plans its own entries with the
single-node planner while the owners plan theirs, then the owners' plan frames are read. An
entry an owner does not have is looked for on the next HRW candidates (objects written under
an older membership, replicas), one sub-batch per candidate and round; an owner that cannot
answer (down, stalled past `max_wait`) has its entries planned on the next candidates the
same way. Only then is an entry missing: a placeholder with `coer` (counted against
`max_soft_errs`), else a 404 naming it (a 503 when a node that may hold it failed), and an
owner's AIS error (bad range, not an archive) is this request's error, all before the status
line, as on one node.

Phase 2 (the output, assemble.py): local items take the single-node path; a remote item's
frame is read from its owner's stream (peerstream.py) when its turn comes. An owner that
fails mid-batch has its remaining items planned again on the next candidates that hold them
(get from neighbour), this node included, and the output resumes where it was, inside an
item if need be. What no candidate has is a hole: with `coer` a placeholder (in a `.tar` one
padded to the entry's length, holes.py), counted against `max_soft_errs`; otherwise, or in
multipart mode (whose metadata already went out), a `HoleError`, and the server aborts the
connection: never a well-formed shorter archive.
"""
import itertools
import logging
from array import array
from collections.abc import Iterable

from ..archive import tar_header, tar_pad
from ..batch import plan as batch_plan
from ..batch.assemble import BatchOutput
from ..batch.errors import BatchError, HoleError
from ..batch.items import Item, Items
from ..batch.plan import MISSING_DIR, Plan
from ..batch.request import MossReq, subset
from ..batch.seams import HELD, HOLE, STREAM, Flush, Segment
from ..store.attrs import provably_same
from .holes import padded_placeholder
from .peerstream import WINDOW, LocalStream, PeerFailed, PeerRefused, PeerStream
from .peerwire import sub_batch
from .smap import hrw_score, placement_key

log = logging.getLogger("getbatch.cluster")


class Gather:
    """One cluster GetBatch on its DT: `smap` the map it keeps throughout, `me` this node's
    NodeInfo, `storage` this node's own share; `peers`: the node's peers.Peers (its pooled
    connections, and the secret that proves a peer request comes from the cluster);
    `max_wait`: seconds a peer may send nothing before it fails;
    `versions`: entries -> {entry index: (node holding its newest version, None when that is a
    delete; its stamp)} (versions.py; None: the first holder found is read)."""

    def __init__(self, req, smap, me, storage, config, peers, max_wait, *, versions=None):
        self.req = req
        self.smap = smap
        self.me = me
        self.storage = storage
        self.config = config
        self.max_wait = max_wait
        self.peers = peers
        self.versions = versions
        self.newest = {}                 # index -> (node holding its newest version or None,
                                         # its stamp)
        self.older = {}                  # index -> nodes whose copy was not its newest version
        self.unsure = {}                 # index -> why it is missing though a node that may
                                         # hold it failed (phase 1: a 503, not a 404)
        self.multipart = not req.strm
        self.outside = smap.node(me.id) is None
        self.items = None                # Items, once planning spans nodes
        self.where = None                # the stream delivering each remote item
        self.tried = {}                  # index -> node ids that lacked it
        self.dead = set()                # nodes that failed during this request
        self.streams = []
        self.local_plans = []
        self.soft = 0                    # placeholders planned (phase 1)
        self.holes = 0                   # placeholders that stood in while sending
        self.phase2 = False
        self.hole_msg = {}               # index -> why it became a hole
        self.gfn = 0                     # entries asked of a node other than their first
        self.gfn_limited = False         # max_gfn refused one

    # -- phase 1

    @property
    def alone(self):
        """A cluster of one: every entry is this node's, and there is nowhere else to look
        (no other node live, joining or lately gone, whose copy may be newer)."""
        return self.smap.alone(self.me.id)

    def plan(self, checked: Iterable[tuple[str, str]] = ()) -> Plan:
        """The merged Plan (every item in request order), or a BatchError."""
        if self.alone:
            # this node plans the request as it is: the same planner and rules as for the
            # owners' shares, without a merge
            return batch_plan.build(self.req, self.storage, self.config.max_soft_errs, checked,
                                    max_inflate=self.config.max_inflate)
        n = len(self.req.entries)
        self.items = Items(self.req.entries, self.req.onob, n, remote=self)
        self.where = [None] * n
        try:
            self._locate(self._compare_versions(n), checked)
            self.soft = self._count_missing()
        except BaseException:
            self.close()
            raise
        self.phase2 = True
        return Plan(self.req, self.items, [], remote=self)

    def _count_missing(self):
        """The placeholders planned, by the soft-error rules; an entry missing while a node
        that may hold it failed is a 503 instead of a 404 (and so is the soft-error limit
        reached with such entries): the request is not wrong, the cluster is short of a node."""
        soft = 0
        for i, err in self.items.placeholders():
            if i in self.unsure and not self.req.coer:
                raise BatchError(self.unsure[i], 503)
            try:
                soft = batch_plan.count_soft_error(soft, err, self.req.coer,
                                                   self.config.max_soft_errs)
            except BatchError as exc:
                if not self.unsure or exc.status != 400:
                    raise
                raise BatchError(f"{exc.message}; {len(self.unsure)} of the missing entries may "
                                 "be on nodes that failed; try again", 503) from None
        return soft

    def _compare_versions(self, n):
        """The entries to locate: entries whose newest version is a delete are missing
        (placeholders here, counted as soft errors or a 404 by `plan`), the others are read
        first from a holder of their newest version (`_candidate`)."""
        if self.versions is None:
            return range(n)
        self.newest = self.versions(self.req.entries)
        deleted = [i for i, (node, _) in self.newest.items() if node is None]
        for i in deleted:
            e = self.req.entries[i]
            self.items[i] = batch_plan.placeholder(
                self.name_of(i), f"{e.provider}://{e.bucket}/{e.objname} does not exist "
                                 "(its newest version is a delete)")
        if not deleted:
            return range(n)
        gone = set(deleted)
        return [i for i in range(n) if i not in gone]

    def _candidate(self, i):
        """The holder of entry `i`'s newest version when known and not tried yet (see
        `_compare_versions`), else the best node (HRW) not yet tried, or None; counts the entry in
        `gfn` when that node is not its first owner (got from a neighbour). (Smap.ranked
        sorts every node; one pass is enough here, and this runs once per entry.)"""
        e = self.req.entries[i]
        key = placement_key(e.provider, e.bucket, e.objname)
        tried = self.tried.get(i, ())
        best = best_score = top_score = None
        for node in self.smap.nodes:
            score = hrw_score(key, node)
            if top_score is None or score > top_score:
                top_score = score
            if node.id in tried or node.id in self.dead:
                continue
            if best is None or score > best_score:
                best, best_score = node, score
        newest = self.newest.get(i, (None,))[0]
        if newest is not None and newest.id not in tried and newest.id not in self.dead:
            if hrw_score(key, newest) != top_score:
                # counted, never refused: the first owner's copy is older, or it is away
                self.gfn += 1
            return newest
        if best is None and self.outside and self.me.id not in tried:
            return self.me   # not (yet) in the map: its own copies are looked at last
        if best is not None and best_score != top_score:
            if self.config.gfn_limit <= self.gfn:
                self.gfn_limited = True
                return None
            self.gfn += 1
        return best

    def _locate(self, indexes, checked=()):
        """Find entries `indexes` on their best candidates, round after round, until each is
        planned somewhere or no candidate is left (then it is missing, or in phase 2 a hole).
        Entries that fall to this node are planned by the single-node planner (phase 1) or
        streamed as a peer would (phase 2)."""
        pending = array("q", indexes)   # indexes in arrays: no int object per entry
        me = self.me.id
        while pending:
            groups = {}
            for i in pending:
                node = self._candidate(i)
                if node is None:
                    self._missing(i)
                else:
                    groups.setdefault(node.id, (node, array("q")))[1].append(i)
            streams, pending = self._open_all(groups)
            if me in groups:
                mine = groups[me][1]
                pending += (self._stream_local(mine) if self.phase2
                            else self._plan_local(mine, checked))
            for s in streams:
                pending += self._read(s)
            pending.sort()

    def _open_all(self, groups):
        """Send every peer of `groups` ({node id: (node, indexes)}) its sub-batch: (the
        streams, the entries of peers that could not be reached)."""
        streams, unreached = [], []
        for nid, (node, indexes) in groups.items():
            if nid != self.me.id:
                s = self._open(node, indexes)
                if s is None:
                    unreached += indexes
                else:
                    streams.append(s)
        return streams, unreached

    def _open(self, node, indexes):
        body = sub_batch(self.req.entries, indexes, self.req.onob)
        s = PeerStream(node, indexes, body, self.peers, self.max_wait, every_id=self._checks_any(indexes, node.id))
        try:
            s.send()
        except PeerFailed as exc:
            self._lost(exc, indexes)
            return None
        self.streams.append(s)   # closed with the request, whatever happens next
        return s

    def _read(self, s):
        """Take a peer's plan; returns the entries still to look for elsewhere."""
        try:
            plan = s.read_plan()
        except PeerFailed as exc:
            self._lost(exc, s.indexes)
            return list(s.indexes)
        except PeerRefused as exc:
            if not self.phase2:
                raise self._refusal(exc, s.indexes) from None
            log.warning("batch: %s refused to stand in: %s", s.node.id, exc.message)
            for i in s.indexes:
                self.tried.setdefault(i, set()).add(s.node.id)
            return list(s.indexes)
        name_of = self.name_of
        for i, (name, _, err) in zip(s.indexes, plan):
            if err is None and name != name_of(i):
                # its frames would carry that name into the output
                s.close()
                self._lost(PeerFailed(s.node, f"its plan names entry {i} {name[:100]!r}, "
                                              f"not {name_of(i)[:100]!r}"), s.indexes)
                return list(s.indexes)
        return self._assign(s, plan)

    def _refusal(self, exc, indexes):
        """This request's error for a peer's error answer (PeerRefused) to its sub-batch of
        `indexes`, before the status line: an AIS error about the entries (a bad range, not
        an archive) is the request's, passed on; the peer's own failure is not the client's:
        a 5xx or its refusal of this node is a 502 naming it and what it said (a 503, to
        retry, when it said 503), a bucket it does not know while this node does (its bucket
        table not current yet) a 503."""
        said = (f"peer {exc.node.id} ({exc.node.url}) failed to plan its {len(indexes)} "
                f"entries of this batch: {exc.status} {exc.message}")
        if exc.status == 404 and self._buckets_known(indexes):
            return BatchError(f"{said} (its bucket table is not current yet); try again", 503)
        if exc.status < 500 and exc.status not in (401, 403):
            return BatchError(exc.message, exc.status)
        return BatchError(said, 503 if exc.status == 503 else 502)

    def _buckets_known(self, indexes):
        """Whether this node knows every bucket of the entries `indexes` (all `ais://`)."""
        named = {(self.req.entries[i].provider, self.req.entries[i].bucket) for i in indexes}
        return all(p == "ais" and self.storage.backend(p, b).has_bucket(b) for p, b in named)

    def _assign(self, s, plan):
        again = []
        for pos, (i, (name, size, err)) in enumerate(zip(s.indexes, plan)):
            if self._take(i, s.node.id, Item(name, size, remote=self, offset=i), err,
                          s.version(pos)):
                self.where[i] = s
                s.take(pos)
            else:
                again.append(i)
        if not s.taken:
            s.finish(None)
        return again

    def _plan_local(self, indexes, checked):
        """Plan entries this node owns with the single-node planner (placeholders, not 404s:
        a missing entry is looked for elsewhere first)."""
        sub = MossReq(subset(self.req.entries, indexes), "tar", True, self.req.onob, True)
        plan = batch_plan.build(sub, self.storage, max_soft_errs=len(indexes), checked=checked,
                                max_inflate=self.config.max_inflate)
        self.local_plans.append(plan)
        again = []
        check = self._checks_any(indexes, self.me.id)
        for j, (i, it) in enumerate(zip(indexes, plan.items)):
            ident = batch_plan.identity(it) if check and it.err is None else None
            if not self._take(i, self.me.id, it, it.err, ident):
                again.append(i)
            elif not self.phase2:
                self.items.adopt(i, plan.items, j)
        return again

    def name_of(self, i):
        """The output name of entry `i` (as its owner names it)."""
        return batch_plan.output_name(self.req.entries[i], self.req.onob)

    def _newest_stamp(self, i, node_id):
        """The stamp entry `i`'s copy on `node_id` must carry to be read: its newest
        version's, when known and held elsewhere (versions.py); None: nothing to check."""
        newest = self.newest.get(i)
        if newest is None or newest[0] is None or newest[0].id == node_id:
            return None
        return newest[1]

    def _checks_any(self, indexes, node_id):
        """Whether some entry of `indexes` must have its version checked on `node_id`
        (then that node is asked to name the version of every item, not only big ones).
        Never in the first round: every entry goes to the holder of its newest version."""
        return bool(self.newest and (self.tried or self.dead)) and any(
            self._newest_stamp(i, node_id) is not None for i in indexes)

    def _take(self, i, node_id, item, err, ident=None):
        """Record where entry `i` was planned; False when that node lacks it, or holds
        another version than its newest (`ident`: ObjectAttrs naming the version there)."""
        if err is not None:
            self.tried.setdefault(i, set()).add(node_id)
            if not self.items.planned(i):
                # the first owner's word, under the name this node gives the entry
                self.items[i] = batch_plan.placeholder(self.name_of(i), err)
            return False
        want = self._newest_stamp(i, node_id) if self.newest else None
        if want is not None and (ident is None or ident.stamp != want):
            # the holder of its newest version failed: an older copy, even of the same
            # size, would be a read back in time
            self.tried.setdefault(i, set()).add(node_id)
            self.older.setdefault(i, []).append(node_id)
            log.warning("batch: %s on %s is not its newest version (stamp %s, %s wanted); "
                        "not taken from there", self.name_of(i), node_id,
                        ident.stamp if ident is not None else "unknown", want)
            return False
        if self.phase2 and (item.name, item.size) != (self.items[i].name, self.items[i].size):
            # another version on this replica: its bytes would not match what was announced
            self.tried.setdefault(i, set()).add(node_id)
            log.warning("batch: %s on %s has size %d, %d was planned; not taken from there",
                        self.items[i].name, node_id, item.size, self.items[i].size)
            return False
        if not self.phase2:
            self.items[i] = item
        return True

    def _missing(self, i):
        """No candidate is left for entry `i`."""
        e = self.req.entries[i]
        msg = f"{e.provider}://{e.bucket}/{e.objname} does not exist on any node"
        if self.dead:
            msg += f" that could be reached (failed: {', '.join(sorted(self.dead))})"
        if i in self.older:
            msg += (f"; {_hold(self.older[i])} only an older version (the newest "
                    "was on a node that failed)")
        limited = f"; {_gfn_spent(self.config)}" if self.gfn_limited else ""
        maybe = self.dead.difference(self.tried.get(i, ()))
        if maybe and not self.phase2:
            self.unsure[i] = self._unsure(i, maybe)
        if self.phase2:
            self.where[i] = None
            self.hole_msg[i] = msg + limited
        elif i in self.unsure or not self.items.planned(i):
            # under coer the placeholder says why it is missing: "try again", not "no such
            # object", when a node that may hold it failed (another node's "not here" or
            # older copy is no answer)
            self.items[i] = batch_plan.placeholder(self.name_of(i),
                                                   self.unsure.get(i, msg) + limited)
        elif limited and self.items[i].err is not None:
            # this node's own planner wrote the placeholder; say why no other node was asked
            self.items[i] = Item(self.items[i].name, 0, err=self.items[i].err + limited)

    def _unsure(self, i, maybe):
        """Why entry `i` is missing though nodes `maybe`, which failed, may hold it."""
        e = self.req.entries[i]
        ref = f"{e.provider}://{e.bucket}/{e.objname}"
        newest = self.newest.get(i, (None,))[0]
        if newest is None or newest.id not in maybe:
            return (f"{ref} is on none of the nodes that answered, and "
                    f"{', '.join(sorted(maybe))} failed before saying whether it holds it; "
                    "try again")
        older = (f"; {_hold(self.older[i])} only an older version, which is not read"
                 if i in self.older else "")
        return (f"{ref}: {newest.id}, the node holding its newest version, did not answer"
                f"{older}; try again")

    def _lost(self, exc, indexes):
        self.dead.add(exc.node.id)
        log.warning("batch: %s; its %d item(s) are looked for on other nodes", exc, len(indexes))

    # -- phase 2

    def _relocate(self, s, exc):
        """Stream `s` failed: plan what it still owed on the next candidates."""
        rest = [i for i in s.owed() if self.where[i] is s]
        self._lost(exc, rest)
        for i in rest:
            self.where[i] = None
        self._locate(rest)

    def _stream_local(self, indexes):
        """This node stands in for a failed one: its own copies, framed as a peer would."""
        sub = MossReq(subset(self.req.entries, indexes), "tar", True, self.req.onob, True)
        try:
            plan = batch_plan.build(sub, self.storage, max_soft_errs=len(indexes),
                                    max_inflate=self.config.max_inflate)
        except BatchError as exc:
            log.warning("batch: cannot stand in locally: %s", exc.message)
            for i in indexes:
                self.tried.setdefault(i, set()).add(self.me.id)
            return list(indexes)
        out = BatchOutput(plan, "tar", multipart=False, end=False)
        s = LocalStream(self.me, list(indexes), plan.items, out,
                        out.content_length, out.close, batch_plan.identity,
                        every_id=self._checks_any(indexes, self.me.id))
        self.streams.append(s)
        return self._assign(s, s.plan)

    def _stream_for(self, i, flush):
        """The stream positioned at item `i`'s frame, after any failover; None for a hole."""
        while True:
            s = self.where[i]
            if s is None:
                return None
            try:
                s.seek(i, flush)
                return s
            except PeerFailed as exc:
                self._relocate(s, exc)

    def frame_pieces(self, it, flush):
        """Views of item `it`'s TAR frame (header, data, padding), each valid until the stream
        next calls `flush`; its stream is failed over, inside the frame if need be, but only
        to a copy of the version whose bytes went out first (same size, checksum and stamp):
        an item is never a mix of versions. A frame that fits the window comes as one view,
        so a failure never leaves part of it sent. Yields nothing when the item became a hole
        (see `hole`)."""
        i = it.offset
        head = tar_header(it.name, it.size)
        hl = len(head)
        total = hl + it.size + tar_pad(it.size)
        done = 0
        first = None   # the version of the copy whose bytes went out first
        while done < total:
            s = self._stream_for(i, flush)
            if s is None:
                if done:
                    raise HoleError(f"{it.name}: its node failed after {done} of its {total} "
                                    "bytes were sent, and no other node has a copy provably "
                                    "of the same version")
                return
            if done and not _same_version(first, s.version()):
                self._refuse(i, s, done)
                continue
            try:
                whole = done == 0 and total <= WINDOW
                v = s.view(total if whole else hl, flush)
                if v[:hl] != head:
                    s.fail(f"the frame of {it.name} does not match its plan")
                if not done:
                    first = s.version()
                if whole or done < hl:
                    yield v[done:]
                    done += len(v) - done
                else:
                    s.skip(done - hl, flush)
                for piece in s.pieces(total - done, flush):
                    yield piece
                    done += len(piece)
            except PeerFailed as exc:
                self._relocate(s, exc)
                continue
            s.frame_done(flush)

    def _refuse(self, i, s, done):
        """Stream `s` has entry `i`, but not provably the version of which `done` bytes were
        sent: look for it on the next candidates."""
        log.warning("batch: %s on %s is not provably the version of which %d bytes were sent; "
                    "not resumed from there", self.name_of(i), s.node.id, done)
        self.tried.setdefault(i, set()).add(s.node.id)
        self.where[i] = None
        self._locate([i])

    def hole(self, it):
        """The placeholder name for item `it`, which became a hole; raises HoleError where
        a placeholder may not stand."""
        msg = self.hole_msg.get(it.offset, f"{it.name}: no node could deliver it")
        if not self.req.coer:
            raise HoleError(f"{msg} (no coer)")
        if self.multipart:
            raise HoleError(f"{msg} (multipart: its size and status were already sent)")
        try:
            batch_plan.count_soft_error(self.soft + self.holes, msg, True,
                                        self.config.max_soft_errs)
        except BatchError as exc:
            raise HoleError(exc.message) from None
        self.holes += 1
        log.warning("batch: %s; a placeholder stands in its place", msg)
        return MISSING_DIR + it.name

    # -- what assemble.py calls

    def _whole_frame(self, it, head, total, flush):
        """The common case, without a generator: the item's frame fits the window and its
        stream is positioned at it. Its view, or None (then frame_pieces does the rest)."""
        i = it.offset
        s = self.where[i]
        if total > WINDOW or s is None or not s.at(i):
            return None
        try:
            v = s.view(total, flush)
        except PeerFailed as exc:
            self._relocate(s, exc)
            return None
        if v[:len(head)] != head:
            try:
                s.fail(f"the frame of {it.name} does not match its plan")
            except PeerFailed as exc:
                self._relocate(s, exc)
            return None
        s.frame_done(flush)
        return v

    def segment(self, it: Item, flush: Flush | None) -> Segment:
        """Item `it`'s bytes for any sink (seams.RemotePart): its frame's data, HELD when
        the frame fits the window, else STREAM (failed over inside if need be); HOLE when
        no node could deliver it."""
        head = tar_header(it.name, it.size)
        hl = len(head)
        total = hl + it.size + tar_pad(it.size)
        v = self._whole_frame(it, head, total, flush)
        if v is not None:
            return HELD, v[hl:hl + it.size]
        frames = self.frame_pieces(it, flush)
        first = next(frames, None)
        if first is None:
            name = self.hole(it)
            return HOLE, (name, padded_placeholder(name, total))
        return STREAM, _data(itertools.chain((first,), frames), hl, it.size)

    def close(self):
        """Drop every peer stream (a peer still sending stops at once), the merged items'
        open files (this node's objects moved there from its plans) and this node's plans;
        the items point back here, so the lists go too (no cycle outlives the request)."""
        for s in self.streams:
            s.close()
        self.streams = []
        if self.items is not None:
            self.items.close()
        for p in self.local_plans:
            p.close()   # kept (closed): the output's items still name their items
        self.items = self.where = None


def _same_version(a, b):
    """True when ObjectAttrs `a` and `b` (None: unknown) provably name the same bytes."""
    return a is not None and b is not None and provably_same(a, b)


def _data(pieces, head_len, size):
    """The data part of a frame given as pieces: without its header and padding."""
    pos = 0
    for piece in pieces:
        a, b = max(head_len - pos, 0), min(len(piece), head_len + size - pos)
        pos += len(piece)
        if a < b:
            yield piece[a:b]


def _hold(node_ids):
    """"n1 holds" or "n1, n2 hold"."""
    return f"{', '.join(node_ids)} {'holds' if len(node_ids) == 1 else 'hold'}"


def _gfn_spent(config):
    """Why an entry was not looked for on another node: `max_gfn`, read as AIS reads it."""
    if config.max_gfn < 0:
        return "get from neighbour is off (max_gfn=-1)"
    how = "" if config.max_gfn else " (AIS's default, min(5, max_soft_errs))"
    return (f"max_gfn={config.max_gfn}{how}: {config.gfn_limit} entries were already read "
            "from neighbours")
