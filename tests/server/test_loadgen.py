"""`getbatch bench` against the shared node: a mix of objects, files inside shards and missing
names, driven by client processes, the figures in its JSON summary; bad arguments are one line."""
import json
import subprocess
import sys

from ..archive.tarhelp import make_tar


def bench(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "getbatch.cli", "bench", *args],
                          capture_output=True, text=True, timeout=120, cwd=cwd)


def test_bench_mix_counts_every_item(node, bucket, tmp_path):
    for i in range(20):
        bucket.object(f"o{i}").get_writer().put_content(b"%d" % i * 100)
    bucket.object("s.tar").get_writer().put_content(
        make_tar([(f"m{i}.wav", b"w" * 3000) for i in range(10)]))
    out = tmp_path / "figures.json"
    r = bench("--url", node.url, "--bucket", bucket.name, "--clients", "2", "--batch-size", "8",
              "--duration", "2s", "--mix", "plain=50,archived=30,missing=20", "--json", str(out))
    assert r.returncode == 0, r.stderr
    f = json.loads(out.read_text())
    assert f["errors"] == 0 and f["busy"] == 0 and f["batches"] > 0
    assert f["items"] == 8 * f["batches"] and 0 < f["missing"] < f["items"]
    assert 0 < f["p50_ms"] <= f["p99_ms"] <= f["max_ms"]
    assert f["items_per_s"] > 0 and f["clients"] == 2
    assert f"{f['batches']} batches" in r.stdout and "errors 0" in r.stdout


def test_bench_stores_objects_first(node, bucket, tmp_path):
    out = tmp_path / "f.json"
    r = bench("--url", node.url, "--bucket", bucket.name, "--put", "30", "--item-size", "4KiB",
              "--clients", "1", "--batch-size", "30", "--duration", "1", "--json", str(out))
    assert r.returncode == 0, r.stderr
    f = json.loads(out.read_text())
    assert f["errors"] == 0 and f["items"] == 30 * f["batches"] > 0
    assert f["bytes"] > f["items"] * 4096   # each item is 4 KiB plus its TAR header
    assert sorted(e.name for e in bucket.list_all_objects()) == [
        f"bench/{i:07d}" for i in range(30)]


def test_bench_bad_arguments_are_one_line(node, bucket):
    for args, words in ((["--mix", "plain=1,cold=2"], "invalid --mix part 'cold=2'"),
                        (["--duration", "soon"], "invalid --duration"),
                        (["--clients", "0"], "invalid --clients 0"),
                        (["--mix", "archived=1"], "holds no files inside shards")):
        r = bench("--url", node.url, "--bucket", bucket.name, *args)
        assert r.returncode == 1 and words in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = bench("--url", node.url, "--bucket", "no-such-bucket", "--duration", "1")
    assert r.returncode == 1 and "cannot list no-such-bucket: 404" in r.stderr, r.stderr
