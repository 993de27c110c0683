"""Object GET latency while multi-object jobs run (docs/jobs.md, `job_rate`).

    PYTHONPATH=src:. python bench/jobs_get_latency.py [--jobs 4] [--gets 400] [--rounds 3]

For each `job_rate` in (0: unthrottled, the default 2000), a node (`getbatch serve`, 2 workers
x 2 threads) starts `--jobs` delete-listrange jobs over a template of absent names (a million
each: they run throughout), then times `--gets` GETs of one 4 KiB object over a keep-alive
connection; the jobs are aborted after. Printed per rate: the median GET latency with the jobs
running and without (same node, before they start), and their ratio, each the median of
`--rounds` rounds.
"""
import argparse
import statistics
import tempfile
import time

import requests

from tests.support.nodes import Node, serve_argv


def _median_get_ms(session, url, n):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        r = session.get(url, timeout=30)
        times.append(time.perf_counter() - t)
        assert r.status_code == 200, r.text
    return statistics.median(times) * 1000


def _round(rate, jobs, gets):
    d = tempfile.mkdtemp()
    node = Node(f"{d}/data", f"{d}/server.log", serve_argv(workers=2, threads=2),
                env={"GETBATCH_JOB_RATE": str(rate), "GETBATCH_MAX_BUCKET_JOBS": str(jobs)})
    try:
        s = requests.Session()
        s.post(f"{node.url}/v1/buckets/b", json={"action": "create-bck"}).raise_for_status()
        s.put(f"{node.url}/v1/objects/b/o", data=b"x" * 4096).raise_for_status()
        url = f"{node.url}/v1/objects/b/o"
        _median_get_ms(s, url, 50)   # warm
        quiet = _median_get_ms(s, url, gets)
        ids = []
        for i in range(jobs):
            r = s.delete(f"{node.url}/v1/buckets/b", json={
                "action": "delete-listrange", "value": {"template": f"absent{i}-{{000000..999999}}"}})
            r.raise_for_status()
            ids.append(r.text)
        time.sleep(0.5)
        busy = _median_get_ms(s, url, gets)
        for job_id in ids:
            s.put(f"{node.url}/v1/cluster", json={"action": "stop", "value": {"ID": job_id}})
        return quiet, busy
    finally:
        node.stop()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=4)
    p.add_argument("--gets", type=int, default=400)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    print(f"{a.jobs} jobs over absent names, {a.gets} GETs of a 4 KiB object per round")
    for rate in (0, 2000):
        runs = [_round(rate, a.jobs, a.gets) for _ in range(a.rounds)]
        quiet = statistics.median(q for q, _ in runs)
        busy = statistics.median(b for _, b in runs)
        print(f"job_rate {rate:>5}: GET median {quiet:.2f} ms without jobs, {busy:.2f} ms with "
              f"them ({busy / quiet:.1f}x)")


if __name__ == "__main__":
    main()
