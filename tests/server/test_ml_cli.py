"""`getbatch get` with the inputs of `ais ml get-batch` (a JSON or YAML spec, --template,
--omit-src-bck, --cont-on-err, --streaming) and `getbatch lhotse-get-batch` (a cut manifest,
--batch-size, --sample-rate, one archive per batch), against the shared node."""
import gzip
import json
import os
import subprocess
import sys
import tarfile

from tests.archive.tarhelp import make_tar


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "getbatch.cli", *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd, env=dict(os.environ, AIS_ENDPOINT=""))


def members(path):
    with tarfile.open(path, mode="r:*") as tf:
        return [(m.name, tf.extractfile(m).read()) for m in tf.getmembers()]


def test_spec_json_across_buckets_omit_src_bck(node, client, bucket, tmp_path):
    other = client.bucket(bucket.name + "-x")
    other.create(exist_ok=True)
    try:
        bucket.object("a.bin").get_writer().put_content(b"a" * 100)
        bucket.object("s.tar").get_writer().put_content(make_tar([("in/x.wav", b"x" * 50)]))
        other.object("m.pth").get_writer().put_content(b"0123456789")
        spec = {"in": [{"objname": "m.pth", "bucket": other.name, "provider": "ais",
                        "start": 2, "length": 5},
                       {"objname": "s.tar", "archpath": "in/x.wav"},
                       {"objname": "a.bin", "bucket": ""}],
                "output_format": "tar", "streaming_get": False}
        (tmp_path / "spec.json").write_text(json.dumps(spec))
        r = cli("get", "--url", node.url, "--bucket", bucket.name, "--spec", "spec.json",
                "--omit-src-bck", "--streaming", "-o", "out.tgz", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        # the format follows the output's name; entries named without their bucket
        assert (tmp_path / "out.tgz").read_bytes()[:2] == b"\x1f\x8b"
        assert members(tmp_path / "out.tgz") == [("m.pth", b"23456"), ("s.tar/in/x.wav", b"x" * 50),
                                                 ("a.bin", b"a" * 100)]
    finally:
        other.delete(missing_ok=True)


def test_spec_yaml_cont_on_err_plus_names_and_template(node, bucket, tmp_path):
    for i in range(3):
        bucket.object(f"t-{i:02d}.wav").get_writer().put_content(b"%d" % i * 10)
    (tmp_path / "spec.yaml").write_text("in:\n  - objname: t-00.wav\n  - objname: gone.wav\n"
                                        "continue_on_err: true\n")
    r = cli("get", "--url", node.url, "--bucket", bucket.name, "--spec", "spec.yaml",
            "t-02.wav", "-o", "y.tar", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert [n for n, _ in members(tmp_path / "y.tar")] == [
        f"{bucket.name}/t-00.wav", f"__404__/{bucket.name}/gone.wav", f"{bucket.name}/t-02.wav"]
    r = cli("get", "--url", node.url, "--bucket", bucket.name, "--template", "t-{00..02}.wav",
            "--cont-on-err", "-o", "t.tar", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert [d for _, d in members(tmp_path / "t.tar")] == [b"%d" % i * 10 for i in range(3)]


def test_bad_specs_are_one_line(node, bucket, tmp_path):
    (tmp_path / "bad.json").write_text('{"in": [{"bucket": "b"}]}')
    (tmp_path / "bad.yaml").write_text("in: [\n")
    for args, words in ((["--spec", "bad.json"], 'entry 0 has no "objname"'),
                        (["--spec", "bad.yaml"], "is not valid YAML"),
                        (["--spec", "none.json"], "cannot read spec none.json"),
                        (["--template", "x-{1..3}"], "--template needs --bucket"),
                        (["--bucket", bucket.name, "--template", "plain"], "has no range")):
        r = cli("get", "--url", node.url, *args, cwd=tmp_path)
        assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_lhotse_cuts_one_archive_per_batch(node, bucket, tmp_path):
    pcm = bytes(range(256)) * 64                       # 16 KiB of "audio", 1 byte a sample
    bucket.object("rec/a.wav").get_writer().put_content(pcm)
    bucket.object("s.tar").get_writer().put_content(make_tar([("b.wav", pcm[::-1])]))
    cuts = [{"id": "c0", "start": 0.0, "duration": 0.5,
             "recording": {"sources": [{"source": f"ais://{bucket.name}/rec/a.wav"}]}},
            {"id": "c1", "start": 1.25, "duration": 0.25,
             "recording": {"path": f"{bucket.name}/rec/a.wav"}},
            {"id": "c2", "start": 0.5, "duration": 1.0,
             "audio_source": f"ais://{bucket.name}/s.tar/b.wav"},
            {"id": "c3", "start": 0.0, "duration": 0.001,
             "recording": {"sources": [{"source": f"ais://{bucket.name}/rec/a.wav"}]}},
            {"id": "c4", "start": 3.0, "duration": 0.5,
             "recording": {"sources": [{"source": f"ais://{bucket.name}/rec/a.wav"}]}}]
    with gzip.open(tmp_path / "cuts.jsonl.gz", "wt") as f:
        f.write("\n".join(json.dumps(c) for c in cuts) + "\n")
    rate = 4000
    r = cli("lhotse-get-batch", "--url", node.url, "--cuts", "cuts.jsonl.gz", "--batch-size", "2",
            "--sample-rate", str(rate), "--output-template", "b-{1..9}.tar", "--omit-src-bck",
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "3 archive(s) from 5 cuts" in r.stderr
    assert sorted(os.listdir(tmp_path)) == ["b-1.tar", "b-2.tar", "b-3.tar", "cuts.jsonl.gz"]
    got = [members(tmp_path / f"b-{i}.tar") for i in (1, 2, 3)]
    assert [[n for n, _ in g] for g in got] == [["rec/a.wav", "rec/a.wav"],
                                               ["s.tar/b.wav", "rec/a.wav"], ["rec/a.wav"]]
    assert got[0][0][1] == pcm[:2000] and got[0][1][1] == pcm[5000:6000]   # 1.25 s, not 1 s
    assert got[1][0][1] == pcm[::-1][2000:6000] and got[1][1][1] == pcm[:4]
    assert got[2][0][1] == pcm[12000:14000]
    # no batch size: every cut into one archive, whole recordings
    r = cli("lhotse-get-batch", "--url", node.url, "--cuts", "cuts.jsonl.gz", "all.tar",
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert [len(d) for _, d in members(tmp_path / "all.tar")] == [len(pcm)] * 5


def test_lhotse_errors_are_one_line(node, bucket, tmp_path):
    (tmp_path / "cuts.jsonl").write_text('{"id": "x", "recording": {}}\n')
    for args, words in ((["--cuts", "cuts.jsonl", "o.tar"], "names no audio source"),
                        (["--cuts", "cuts.jsonl"], "give an output archive OUT"),
                        (["--cuts", "cuts.jsonl", "--sample-rate", "5", "o.tar"],
                         "outside [1000, 384000]"),
                        (["--cuts", "nope.jsonl", "o.tar"], "cannot read cuts nope.jsonl")):
        r = cli("lhotse-get-batch", "--url", node.url, *args, cwd=tmp_path)
        assert r.returncode == 1 and words in r.stderr and "Traceback" not in r.stderr, r.stderr
    bucket.object("a.wav").get_writer().put_content(b"w" * 10)
    line = json.dumps({"id": "y", "audio_source": f"{bucket.name}/a.wav"})
    (tmp_path / "three.jsonl").write_text("\n".join([line] * 3) + "\n")
    r = cli("lhotse-get-batch", "--url", node.url, "--cuts", "three.jsonl", "--batch-size", "1",
            "--output-template", "o-{1..2}.tar", cwd=tmp_path)
    assert r.returncode == 1 and "no name left for batch 3" in r.stderr, r.stderr
