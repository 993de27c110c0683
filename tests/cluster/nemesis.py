"""A seeded fault injector (the nemesis) for real clusters, and a whole trial: workload under
faults, healing, rebalance, and the contract checked (checker.py) over what every node says.

The schedule is a function of the seed alone, printed before it runs, so a failing run is
replayed with the same seed (`bench/nemesis_run.py --seed S`). Faults come one at a time, each
healed before the next, and never more than one node is away at once, so a bucket with two
copies always has one reachable; a node that leaves for good is followed by a rebalance (its
copies made again elsewhere) before the next fault: every violation found is one the contract
forbids.

- kill:       SIGKILL a node's process group, start it again after `hold` seconds
- pause:      SIGSTOP a node for `hold` seconds (past the 4 s lease: it leaves the map)
- restart:    SIGTERM a node (it leaves at once) and start it again after `hold` seconds
- etcd_pause: SIGSTOP etcd past the lease: every node's map loses its peers for a while
- join:       start one more node;  leave: stop a node for good (it stays out)
"""
import os
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass

import requests

from getbatch.cluster.peers import SECRET_HEADER

from .checker import ABSENT, MIXED, UNREADABLE, Checker, Violation, summary
from .nodes import LEASE_TTL
from .workload import Client, History, Versions, Workload

FAULTS = ("kill", "pause", "restart", "etcd_pause", "join", "leave")


@dataclass(frozen=True)
class Fault:
    at: float     # seconds from the start of the run
    kind: str
    slot: int     # the node: slot modulo the nodes in the cluster at that moment
    hold: float   # seconds the fault lasts

    def __str__(self):
        return f"t={self.at:5.1f}s {self.kind:<10} slot {self.slot} for {self.hold:.1f}s"


def schedule(seed, duration, nodes=3, kinds=FAULTS, min_nodes=3, max_nodes=4):
    """The faults of a run of `duration` seconds, from `seed` alone."""
    rng = random.Random(seed)
    out, t, count = [], rng.uniform(0.5, 2.0), nodes
    while t < duration:
        allowed = [k for k in kinds if not (k == "join" and count >= max_nodes or
                                            k == "leave" and count <= min_nodes)]
        if not allowed:
            break
        kind = rng.choice(allowed)
        hold = {"kill": rng.uniform(0.5, 4), "pause": rng.uniform(1, 2 * LEASE_TTL),
                "restart": rng.uniform(0.2, 2), "etcd_pause": rng.uniform(LEASE_TTL + 1,
                                                                          2 * LEASE_TTL),
                }.get(kind, 0.0)
        count += {"join": 1, "leave": -1}.get(kind, 0)
        out.append(Fault(round(t, 2), kind, rng.randrange(1 << 16), round(hold, 2)))
        t += hold + rng.uniform(1.0, 3.0)
    return out


class Nemesis:
    """Runs a schedule against a `nodes.Cluster` in a thread; `urls()` are the nodes it has
    not taken away (where a workload sends its requests)."""

    def __init__(self, cluster, faults, out=print, clock=time.monotonic):
        self.cluster = cluster
        self.faults = faults
        self.out = out
        self.clock = clock        # the history's clock: faults and ops on one time line
        self.log = []             # (start, end of healing, kind, what) of each fault applied
        self.injected = Counter()
        self.removed = set()      # node indexes stopped for good (leave)
        self.away = set()         # node indexes killed, paused or stopped right now
        self.etcd_paused = False
        self.error = None
        self._lock = threading.Lock()
        self._thread = None

    def members(self):
        return [i for i in range(len(self.cluster.nodes)) if i not in self.removed]

    def urls(self):
        with self._lock:
            return [self.cluster.nodes[i].url for i in self.members() if i not in self.away]

    def node_name(self, i):
        n = self.cluster.nodes[i]
        return f"node {i} ({getattr(n, 'id', '?')}, {n.url})"

    # ---- the faults: begin() takes a node (or etcd) away, end() brings it back
    def begin(self, kind, i=None):
        if kind == "etcd_pause":
            os.kill(self.cluster.etcd.proc.pid, signal.SIGSTOP)
            self.etcd_paused = True
            return
        with self._lock:
            self.away.add(i)
        if kind == "kill":
            self.cluster.kill(i)
        elif kind == "pause":
            self.cluster.pause(i)
        elif kind in ("restart", "leave"):
            self.cluster.stop(i)
            if kind == "leave":
                self.removed.add(i)
        else:
            raise ValueError(f"no fault {kind!r}")

    def end(self, kind, i=None):
        if kind == "etcd_pause":
            os.kill(self.cluster.etcd.proc.pid, signal.SIGCONT)
            self.etcd_paused = False
            return
        if kind == "pause":
            self.cluster.resume(i)
        elif kind in ("kill", "restart"):
            self.cluster.restart(i)
        with self._lock:
            self.away.discard(i)

    def settle(self):
        """Wait until the nodes up agree that they are the members."""
        up = [i for i in self.members() if i not in self.away]
        self.cluster.wait_members(len(up), timeout=LEASE_TTL * 4 + 30)

    def apply(self, f):
        """Inject `f`, hold it, heal it, and wait for the members to agree."""
        start = self.clock()
        members = self.members()
        i = members[f.slot % len(members)]
        if f.kind == "join":
            node = self.cluster.add()
            i = node.index
            self.out(f"nemesis: {f}: node {i} ({node.id}, {node.url}) joined")
        else:
            self.out(f"nemesis: {f}: " + ("etcd" if f.kind == "etcd_pause" else
                                          self.node_name(i)))
            self.begin(f.kind, i)
            time.sleep(f.hold)
            self.end(f.kind, i)
        self.injected[f.kind] += 1
        self.settle()
        self.log.append((start, self.clock(), f.kind,
                         "etcd" if f.kind == "etcd_pause" else f"node {i}"))
        if f.kind == "leave":
            # what the operator does after a node leaves for good: its copies are made again
            # elsewhere before another node may go (two holders gone for good lose data,
            # which the contract allows)
            st = rebalance(self.cluster.nodes[self.members()[0]].url)
            self.out(f"nemesis: rebalance after the leave: {st['state']}")

    def _run(self):
        t0 = time.monotonic()
        try:
            for f in self.faults:
                time.sleep(max(0.0, f.at - (time.monotonic() - t0)))
                self.apply(f)
        except Exception as exc:  # reported by join(): the run is void, not passed
            self.error = exc

    def start(self):
        self._thread = threading.Thread(target=self._run, name="nemesis", daemon=True)
        self._thread.start()

    def join(self):
        self._thread.join()
        if self.error is not None:
            raise self.error

    def heal(self):
        """Whatever a failed step left away comes back; the members agree again."""
        if self.etcd_paused:
            self.end("etcd_pause")
        for i in self.members():
            n = self.cluster.nodes[i]
            if getattr(n, "paused", False):
                self.cluster.resume(i)
            if n.proc.poll() is not None:
                self.cluster.restart(i)
        self.away.clear()
        self.settle()


# ---- a whole trial
def create_bucket(url, bucket, copies):
    s = requests.Session()
    r = s.post(f"{url}/v1/buckets/{bucket}", json={"action": "create-bck"},
               params={"provider": "ais"}, timeout=10)
    assert r.status_code == 200, r.text
    r = s.patch(f"{url}/v1/buckets/{bucket}", params={"provider": "ais"}, timeout=10,
                json={"action": "set-bprops",
                      "value": {"mirror": {"enabled": copies > 1, "copies": copies}}})
    assert r.status_code == 200, r.text


def rebalance(url, timeout=120):
    """Run a rebalance on every node (no rate limit) and wait for it: its final status."""
    requests.post(url + "/v1/rebalance", params={"rate": 0}, timeout=30).raise_for_status()
    return wait_rebalance(url, timeout)


def wait_rebalance(url, timeout=120):
    """The final status of the rebalance running on the cluster of `url`, once it ends."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = requests.get(url + "/v1/rebalance", timeout=30).json()
        if st["state"] != "running":
            return st
        time.sleep(0.2)
    raise AssertionError(f"rebalance still running after {timeout}s: {st}")


def holder_states(secret, holders, bucket, name, versions):
    """{label: state of its own copy} for each (label, url) of `holders`, read through the
    intra-cluster API (what a node holds itself, not what it would fetch from a peer)."""
    out = {}
    for label, url in holders:
        r = requests.get(f"{url}/v1/_peer/objects/{bucket}/{name}", timeout=30,
                         params={"provider": "ais"}, headers={SECRET_HEADER: secret})
        if r.status_code == 404:
            out[label] = ABSENT
        else:
            r.raise_for_status()
            vid, bad = versions.identify(name, r.content)
            out[label] = vid if not bad else f"<{bad}>"
    return out


def final_violations(cluster, nodes, client, checker, names, copies):
    """After healing: each name read through every node and each node's own copy."""
    secret = cluster.secret()
    out = []
    for name in names:
        answers = {}
        for i in nodes:
            before = len(client.history.ops)
            client.get(cluster.nodes[i].url, name)
            got = client.history.ops[before:]
            if not got:
                out.append(Violation(UNREADABLE, name, f"node {i} answers an error after "
                                                       f"healing: {client.errors}"))
            elif got[0].bad:
                out.append(Violation(MIXED, name, f"node {i}: {got[0].bad}"))
            else:
                answers[i] = got[0].vid
        holders = holder_states(secret, [(cluster.nodes[i].id, cluster.nodes[i].url)
                                         for i in nodes], client.bucket, name, client.versions)
        out += checker.check_final(name, answers, copies=min(copies, len(nodes)),
                                   holders=holders)
    return out


@dataclass
class Report:
    seed: int
    duration: float
    ops: dict
    errors: dict
    faults: dict
    violations: list
    rebalance: str
    fault_log: list

    def near(self, at):
        """The last fault that began before `at`, and how long before (for triage)."""
        before = [e for e in self.fault_log if e[0] <= at]
        if not before:
            return "before any fault"
        start, healed, kind, what = before[-1]
        when = "during it" if at <= healed else f"{at - healed:.1f} s after it healed"
        return f"{kind} of {what} at {start:.1f} s, {when}"

    def lines(self):
        yield (f"seed {self.seed}, {self.duration:.0f} s: {sum(self.ops.values())} operations "
               f"{dict(sorted(self.ops.items()))}")
        yield f"faults injected: {dict(sorted(self.faults.items()))}"
        yield f"client errors (not violations): {dict(sorted(self.errors.items()))}"
        yield f"rebalance after healing: {self.rebalance}"
        yield f"violations: {len(self.violations)} {summary(self.violations)}"
        for v in self.violations[:20]:
            yield f"  {v}" + (f" [{self.near(v.at)}]" if v.at is not None else "")


def trial(cluster, seed, duration, names=12, copies=2, kinds=FAULTS, threads=3,
          large_size=(3 << 20, 6 << 20), out=print):
    """One seeded run on `cluster`: a workload under the nemesis for `duration` seconds, then
    heal, rebalance, and check. The Report."""
    faults = schedule(seed, duration, nodes=len(cluster.nodes), kinds=kinds)
    out(f"nemesis: seed {seed}, {len(faults)} faults over {duration:.0f}s "
        f"(replay: bench/nemesis_run.py --seed {seed} --duration {duration:.0f})")
    bucket = f"nem{seed}"
    create_bucket(cluster.urls[0], bucket, copies)
    client = Client(bucket, Versions(), History())
    nemesis = Nemesis(cluster, faults, out=out, clock=client.history.now)
    keys = [f"k{i:02d}" for i in range(names)]
    work = Workload(client, nemesis.urls, keys, seed, large_size=large_size, threads=threads)
    work.start()
    nemesis.start()
    try:
        nemesis.join()
        time.sleep(max(0.0, duration - client.history.now()))
    finally:
        work.stop()
        nemesis.heal()
    st = rebalance(cluster.urls[nemesis.members()[0]])
    checker = Checker(client.history.ops)
    violations = checker.check_writes() + checker.check_reads()
    violations += final_violations(cluster, nemesis.members(), client, checker, keys, copies)
    return Report(seed, duration, client.history.counts(), dict(client.errors),
                  dict(nemesis.injected), violations,
                  f"{st['state']} (moved {st.get('moved', 0)}, copied {st.get('copied', 0)})",
                  nemesis.log)
