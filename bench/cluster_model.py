"""A calibrated model of cluster GetBatch throughput versus node count and NIC rate.

    python bench/cluster_model.py FIGURES.json      # from bench/bench_cluster_netns.py --out

Calibration, per item kind, from the unshaped run (the nodes are CPU-bound there). B items of
w bytes on the wire each (the item, its 512-byte TAR header, padding). CPU seconds per item on
one core, from each worker's user+system time (/proc/PID/stat); wall times on this shared
machine include waiting for the CPU, CPU seconds do not:
- a: the lone node (parse, plan, read, send);
- m: the DT per remote item (its sub-batch, reading the peer's plan and item frames,
  forwarding them), from the 3-node run: m = (DT CPU - a B/3) / (2B/3);
- p: a peer per item it serves (its part of the plan, read, send);
- each split into planning (before the status line) and streaming by the share of the wall
  time before the first byte on that side (TTFB / batch time);
- L: the NIC rate in bytes/s: nominal times the efficiency measured through a shaped link
  (the lone node's 1 GiB object at 1 Gbit/s).

One batch on N separate machines (a batch is served by one worker process on each node,
so one core each), remote share f = (N-1)/N; planning finishes on every node before the
first byte, then the stream runs at its slowest resource:
    T = B max(a_plan/N + f m_plan,  p_plan/N)                     planning (TTFB)
      + B max(a_send/N + f m_send,  p_send/N,  w/L,  f w/L)        streaming
                DT CPU              a peer    DT NIC out, DT NIC in (fan-in)
    throughput = B / T
It assumes the resources of the stream overlap perfectly, the client's link is at least the
DT's, per-batch constants (connection, round trips, ~1 ms) are nil, and m and p do not grow
with N (the DT reads N-1 streams through one window each). For one node it is
B (a_plan + max(a_send, w/L)).

Many batches at once, each on a different DT (clients spread over the nodes), C cores per
node: the cluster's CPU does a/N + f (m + p) per item and every item leaves a NIC (1 + f)
times (peer to DT, DT to client), spread over N NICs:
    aggregate items/s = min( N C / (a/N + f (m + p)),  N L / ((1 + f) w) )

Checking it here: the measured runs had every process (3 nodes, etcd, the client) on the same
2 cores, and other sessions' work too: a CPU-bound loop got 20-30 % of a core during the run.
So the CPU-bound (unshaped) figures are checked as ratios: the two sides alternate under the
same load, the nodes are saturated, and the 3 / 1 ratio is then the lone node's CPU seconds
per batch over the cluster's (all three nodes); the NIC-bound (shaped, large items) figures
are checked as absolute rates.
"""
import json
import sys

SIZES = {"4 KiB": ("4KiB x 10K", 4096), "64 KiB": ("64KiB x 2K", 65536)}
NICS = {"1 Gbit/s": 1e9 / 8, "10 Gbit/s": 10e9 / 8, "25 Gbit/s": 25e9 / 8}
NODES = (1, 2, 3, 4, 6, 8, 12, 16)


def wire(size):
    return 512 + size + (-size & 511)


def calibrate(fig, label, size):
    rec = fig[f"link unshaped | {label}"]
    b = rec["items"]
    one, three = rec["1"], rec["3"]
    a = one["cpu_per_batch"][0] / b
    dt, *peers = three["cpu_per_batch"]
    m = (dt - a * b / 3) / (2 * b / 3)
    p = sum(peers) / len(peers) / (b / 3)
    plan1 = one["ttfb"] / one["seconds"]
    plan3 = three["ttfb"] / three["seconds"]
    # the DT's own share is planned like the lone node's: the rest of its plan time is m's
    a_plan = a * plan1
    m_plan = max(0.0, (dt * plan3 - a_plan * b / 3) / (2 * b / 3))
    return {"a": a, "m": m, "p": p, "w": wire(size), "a_plan": a_plan, "a_send": a - a_plan,
            "m_plan": m_plan, "m_send": max(0.0, m - m_plan), "p_plan": p * plan3,
            "p_send": p * (1 - plan3)}


def nic_efficiency(fig):
    """Measured / nominal bytes per second of the lone node's 1 GiB object at 1 Gbit/s
    (0.95, the figure of the runs in bench/RESULTS-cluster.md, when it was not run)."""
    rec = fig.get("link 1gbit, sendfile | 1 GiB object")
    if rec is None:
        return 0.95
    return rec["1"]["mb_s"] * 1e6 / (1e9 / 8)


def seconds_per_item(c, n, rate):
    """(model seconds per item of one batch on n machines, the streaming bound)."""
    f = (n - 1) / n
    plan = max(c["a_plan"] / n + f * c["m_plan"], c["p_plan"] / n)
    dt, peer = c["a_send"] / n + f * c["m_send"], c["p_send"] / n if n > 1 else 0.0
    bounds = {"DT CPU": dt, "peer CPU": peer}
    if rate:
        bounds["DT NIC out"] = c["w"] / rate
        bounds["DT NIC in"] = f * c["w"] / rate
    which = max(bounds, key=bounds.get)
    return plan + bounds[which], which


def one_batch(c, n, rate):
    """(items/s of one batch on n machines, the streaming bound)."""
    t, which = seconds_per_item(c, n, rate)
    return 1 / t, which


def aggregate(c, n, rate, cores=1):
    """(items/s of many concurrent batches on n machines, the bound)."""
    f = (n - 1) / n
    cpu = n * cores / (c["a"] / n + f * (c["m"] + c["p"]))
    nic = n * rate / ((1 + f) * c["w"])
    return (cpu, "CPU") if cpu < nic else (nic, "NIC")


def main(path):
    with open(path) as fh:
        data = json.load(fh)
    fig = data["figures"]
    eff = nic_efficiency(fig)
    print(f"NIC efficiency at 1 Gbit/s (tbf): {eff:.2f} of nominal")
    cal = {}
    for kind, (label, size) in SIZES.items():
        cal[kind] = c = calibrate(fig, label, size)
        print(f"{kind}: " + ", ".join(f"{k} {v * 1e6:.1f} us" for k, v in c.items() if k != "w")
              + f", w {c['w']} B")
    print("\ncheck, CPU-bound (unshaped): 3 / 1 ratio = lone CPU / cluster CPU per batch")
    for label in ("4KiB x 10K", "64KiB x 2K", ".tar members 4KiB x 10K"):
        rec = fig[f"link unshaped | {label}"]
        model = rec["1"]["cpu_per_batch"][0] / sum(rec["3"]["cpu_per_batch"])
        print(f"  {label:24} measured {rec['ratio']:.2f}x, model {model:.2f}x")
    print("check, NIC-bound (1 Gbit/s): MB/s on the wire after the first byte, measured / model")
    for key, rec in fig.items():
        if not key.startswith("link 1gbit"):
            continue
        for n in ("1", "3"):
            model = eff * 1e9 / 8 / 1e6
            got = rec["bytes"] / (rec[n]["seconds"] - rec[n]["ttfb"]) / 1e6
            print(f"  {key:40} {n} node(s): {got:6.1f} / {model:6.1f} = {got / model:.2f}")
    short = {"DT CPU": "cpu", "peer CPU": "peer", "DT NIC out": "out", "DT NIC in": "in",
             "CPU": "cpu", "NIC": "nic"}
    head = "| items, NIC | " + " | ".join(f"N={n}" for n in NODES) + " |"
    rule = "|---|" + "---:|" * len(NODES)
    for title, cell in (
            ("one batch on N separate machines: items/s [bound: DT cpu, DT NIC out]",
             one_batch),
            ("many concurrent batches, DTs spread, 1 core per node: items/s [bound]",
             aggregate)):
        print(f"\nprediction, {title}\n{head}\n{rule}")
        for kind, c in cal.items():
            for nic, rate in NICS.items():
                cells = [cell(c, n, rate * eff) for n in NODES]
                print(f"| {kind}, {nic} | "
                      + " | ".join(f"{v:,.0f} {short[w]}" for v, w in cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
