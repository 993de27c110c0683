"""A calibrated model of cluster GetBatch throughput versus node count and NIC rate.

    python bench/cluster_model.py FIGURES.json      # from bench/bench_cluster_netns.py --out

Calibration (from the unshaped run, where the nodes are CPU-bound), per item kind, with B
items of w bytes on the wire (the item, its 512-byte TAR header, padding):
- a: the lone node worker's CPU seconds per item (parse, plan, read, send);
- m: the DT's CPU seconds per remote item (its sub-batch, reading the peer's frame, forwarding
  it), from the 3-node run: m = (DT CPU - a B/3) / (2B/3);
- p: a peer's CPU seconds per item it sends (its part of the plan, read, send);
- L: the NIC rate in bytes/s: the nominal rate times the efficiency measured for a shaped
  link (the lone node's 1 GiB object over 1 Gbit/s).

One batch on N nodes (each a separate machine, at least one core for the batch: a batch is
served by one worker process on each node), remote share f = (N-1)/N:
    T = max( B (a/N + f m),        DT CPU: its own share plus merging the rest
             B a / N... p-side:    B p / N  (each peer's CPU, in parallel)
             B w / L,              the DT's NIC out: the whole batch to the client
             B f w / L )           the DT's NIC in: every remote item (fan-in)
    throughput = B / T
It assumes perfect overlap (pipelining) of the resources and a client whose link is at least
the DT's; TTFB (planning before the status line) and per-batch constants are left out, so it
is an upper bound for small batches. For one node it reduces to max(a, w/L) per item.

Checking it on this machine: the measured runs had every process on the same 2 cores (and
this client beside them), so there the CPU bound is the larger of the busiest process and
the sum of all processes' CPU over 2 cores.
"""
import json
import sys

SIZES = {"4 KiB": ("4KiB x 10K", 4096), "64 KiB": ("64KiB x 2K", 65536)}
NICS = {"1 Gbit/s": 1e9 / 8, "10 Gbit/s": 10e9 / 8, "25 Gbit/s": 25e9 / 8}
NODES = (1, 2, 3, 4, 6, 8, 12, 16)
CORES_HERE = 2


def wire(size):
    return 512 + size + (-size & 511)


def calibrate(fig, label, size):
    rec = fig[f"link unshaped | {label}"]
    b = rec["items"]
    a = rec["1"]["cpu_per_batch"][0] / b
    dt, *peers = rec["3"]["cpu_per_batch"]
    m = (dt - a * b / 3) / (2 * b / 3)
    p = sum(peers) / len(peers) / (b / 3)
    return {"a": a, "m": m, "p": p, "w": wire(size)}


def nic_efficiency(fig):
    """Measured / nominal bytes per second of the lone node's 1 GiB object at 1 Gbit/s."""
    rec = fig.get("link 1gbit, sendfile | 1 GiB object")
    if rec is None:
        return 0.95
    return rec["1"]["mb_s"] * 1e6 / (1e9 / 8)


def predict(c, n, rate):
    """(items/s, the bound) of one batch on n machines with NIC `rate` bytes/s."""
    f = (n - 1) / n
    bounds = {"DT CPU": c["a"] / n + f * c["m"], "peer CPU": c["p"] / n if n > 1 else 0,
              "DT NIC out": c["w"] / rate, "DT NIC in": f * c["w"] / rate}
    which = max(bounds, key=bounds.get)
    return 1 / bounds[which], which


def check_here(c, rec_side, n, rate, client_cpu):
    """Per-item seconds the model gives on this machine (2 shared cores)."""
    f = (n - 1) / n
    dt = c["a"] / n + f * c["m"]
    peers = [c["p"] / n] * (n - 1)
    total = dt + sum(peers) + client_cpu
    bounds = {"CPU (busiest process)": max([dt] + peers), "CPU (2 shared cores)": total / CORES_HERE}
    if rate:
        bounds["DT NIC out"] = c["w"] / rate
        bounds["DT NIC in"] = f * c["w"] / rate
    which = max(bounds, key=bounds.get)
    return 1 / bounds[which], which


def main(path):
    with open(path) as fh:
        data = json.load(fh)
    fig = data["figures"]
    eff = nic_efficiency(fig)
    print(f"NIC efficiency at 1 Gbit/s (tbf): {eff:.2f} of nominal")
    cal = {}
    for kind, (label, size) in SIZES.items():
        cal[kind] = c = calibrate(fig, label, size)
        print(f"{kind}: a = {c['a'] * 1e6:.0f} us/item, m = {c['m'] * 1e6:.0f} us/remote item, "
              f"p = {c['p'] * 1e6:.0f} us/item sent, w = {c['w']} B")
    print("\ncheck against the measured runs (this machine: 2 shared cores)")
    for kind, (label, size) in SIZES.items():
        for tag, rate in (("link unshaped", None), ("link 1gbit", eff * 1e9 / 8)):
            rec = fig[f"{tag} | {label}"]
            for n, side in ((1, "1"), (3, "3")):
                client = rec[side]["client_cpu_per_batch"] / rec["items"] \
                    if "client_cpu_per_batch" in rec[side] else 0.0
                pred, which = check_here(cal[kind], rec[side], n, rate, client)
                meas = rec[side]["items_s"]
                print(f"  {kind:6} {tag:14} {n} node(s): measured {meas:8,.0f} items/s, model "
                      f"{pred:8,.0f} ({which}), model/measured {pred / meas:.2f}")
    print("\nprediction: one batch, N separate machines (items/s; MB/s; bound)")
    for kind, c in cal.items():
        for nic, rate in NICS.items():
            r = rate * eff
            cells = []
            for n in NODES:
                ips, which = predict(c, n, r)
                cells.append(f"N={n}: {ips:,.0f} ({ips * SIZES[kind][1] / 1e6:,.0f} MB/s, {which})")
            print(f"  {kind} {nic}:\n    " + "\n    ".join(cells))


if __name__ == "__main__":
    main(sys.argv[1])
