"""`getbatch get` against a real node: byte-for-byte round trips in every format, --coer,
missing objects, --from, and a cut stream that must leave no file behind."""
import io
import os
import socket
import subprocess
import sys
import tarfile
import threading
import zipfile

import lz4.frame
import pytest

from getbatch.client import _Progress
from tests.archive.tarhelp import make_tar as _tar

CLI = [sys.executable, "-m", "getbatch.cli", "get"]


def get(args, cwd, stdin=None):
    return subprocess.run(CLI + args, capture_output=True, text=True, timeout=60, cwd=cwd,
                          input=stdin, env=dict(os.environ, AIS_ENDPOINT=""))


@pytest.fixture
def data(bucket):
    objs = {"a.bin": os.urandom(3000), "dir/b.bin": os.urandom(1 << 20), "empty": b""}
    for name, blob in objs.items():
        bucket.object(name).get_writer().put_content(blob)
    member = os.urandom(777)
    bucket.object("s.tar").get_writer().put_content(_tar([("m/x.wav", member)]))
    objs["s.tar/m/x.wav"] = member
    return bucket.name, objs


def _entries(path, fmt):
    """[(name, bytes)] of the archive at `path`, in order."""
    if fmt == "zip":
        with zipfile.ZipFile(path) as z:
            return [(i.filename, z.read(i)) for i in z.infolist()]
    raw = open(path, "rb").read()
    if fmt == "tar.lz4":
        raw = lz4.frame.decompress(raw)
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:*") as tf:
        return [(m.name, tf.extractfile(m).read()) for m in tf.getmembers()]


def _no_leftovers(d, keep=()):
    assert sorted(os.listdir(d)) == sorted(keep), os.listdir(d)


@pytest.mark.parametrize("fmt,ext", [("tar", ".tar"), ("tgz", ".tgz"), ("tar.lz4", ".tar.lz4"),
                                     ("zip", ".zip")])
def test_round_trip_byte_for_byte(node, data, tmp_path, fmt, ext):
    b, objs = data
    names = ["dir/b.bin", "s.tar/m/x.wav", "a.bin", "empty", "a.bin"]
    r = get(["--url", node.url, "--bucket", b, "--format", fmt] + names, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / ("batch" + ext)
    assert _entries(out, fmt) == [(f"{b}/{n}", objs[n]) for n in names]
    # no terminal here: no progress line, just the summary
    assert r.stderr.count("\n") == 1 and "\r" not in r.stderr
    assert f"batch{ext}: 5 entries, " in r.stderr and "MiB" in r.stderr
    _no_leftovers(tmp_path, ["batch" + ext])


def test_names_with_buckets_and_from_file(node, data, tmp_path):
    b, objs = data
    (tmp_path / "names.txt").write_text(f"# a batch\n{b}/a.bin\n\n  {b}/s.tar/m/x.wav\n")
    r = get(["--url", node.url, "--from", "names.txt", "-o", "x.tar"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert _entries(tmp_path / "x.tar", "tar") == [(f"{b}/a.bin", objs["a.bin"]),
                                                   (f"{b}/s.tar/m/x.wav", objs["s.tar/m/x.wav"])]
    r = get(["--url", node.url, "--from", "-", "-o", "y.tar"], cwd=tmp_path,
            stdin=f"{b}/empty\n")
    assert r.returncode == 0, r.stderr
    assert _entries(tmp_path / "y.tar", "tar") == [(f"{b}/empty", b"")]


def test_coer_turns_a_missing_object_into_a_placeholder(node, data, tmp_path):
    b, objs = data
    r = get(["--url", node.url, "--bucket", b, "--coer", "a.bin", "nope", "-o", "c.tar"],
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert _entries(tmp_path / "c.tar", "tar") == [(f"{b}/a.bin", objs["a.bin"]),
                                                   (f"__404__/{b}/nope", b"")]
    assert "2 entries (1 missing" in r.stderr


def test_a_missing_object_without_coer_fails_and_writes_nothing(node, data, tmp_path):
    b, _ = data
    r = get(["--url", node.url, "--bucket", b, "a.bin", "nope", "-o", "m.tar"], cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.startswith("getbatch get: GetBatch refused: 404 ")
    assert f"ais://{b}/nope does not exist" in r.stderr and "Traceback" not in r.stderr
    _no_leftovers(tmp_path)


@pytest.mark.parametrize("args,words", [
    (["a.bin"], "names no bucket"),
    ([], "give names, --from FILE, --template T or --epoch ID"),
    (["--from", "nothere.txt"], "cannot read names from nothere.txt"),
])
def test_usage_errors_are_one_line(node, tmp_path, args, words):
    r = get(["--url", node.url] + args, cwd=tmp_path)
    assert r.returncode in (1, 2) and words in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1
    _no_leftovers(tmp_path)


def test_an_unreachable_node_is_one_line(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = get(["--url", f"http://127.0.0.1:{port}", "b/a"], cwd=tmp_path)
    assert r.returncode == 1 and "cannot reach" in r.stderr and r.stderr.count("\n") == 1


@pytest.mark.parametrize("fmt", ["tar", "tgz"])
def test_a_cut_stream_leaves_no_file(tmp_path, fmt):
    """A server that promises more than it sends (tar: Content-Length; tgz: chunked without
    the end of the gzip stream) and closes: the client must not keep what it got."""
    whole = _tar([("b/a", b"a" * 5000), ("b/c", b"c" * 5000)])
    if fmt == "tar":
        head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/x-tar\r\n"
                b"Content-Length: %d\r\n\r\n" % len(whole))
        body = whole[:6000]
    else:
        import gzip
        gz = gzip.compress(whole)[:-40]
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
        body = b"%x\r\n%s\r\n" % (len(gz), gz)   # and no last chunk
    url, t = _fake_node([head + body])
    r = get(["--url", url, "--format", fmt, "b/a", "b/c", "-o", "cut.out"], cwd=tmp_path)
    t.join(10)
    assert r.returncode == 1
    assert "the stream was cut short" in r.stderr, r.stderr
    _no_leftovers(tmp_path)


def _fake_node(answers):
    """A server answering each connection's request with the next of `answers`; (url, thread)."""
    srv = socket.create_server(("127.0.0.1", 0))

    def serve():
        with srv:
            for answer in answers:
                conn, _ = srv.accept()
                with conn:
                    conn.recv(65536)
                    conn.sendall(answer)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return f"http://127.0.0.1:{srv.getsockname()[1]}", t


def test_a_busy_node_is_asked_again_after_retry_after(tmp_path):
    busy = (b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 0\r\nContent-Type: application/json"
            b"\r\nContent-Length: 18\r\n\r\n{\"message\":\"busy\"}")
    whole = _tar([("b/a", b"a" * 10)])
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(whole) + whole
    url, t = _fake_node([busy, busy, ok])
    r = get(["--url", url, "b/a", "-o", "a.tar"], cwd=tmp_path)
    t.join(10)
    assert r.returncode == 0, r.stderr
    assert _entries(tmp_path / "a.tar", "tar") == [("b/a", b"a" * 10)]
    url, t = _fake_node([busy] * 6)
    r = get(["--url", url, "b/a", "-o", "b.tar"], cwd=tmp_path)
    t.join(10)
    assert r.returncode == 1 and "GetBatch refused: 429 busy" in r.stderr, r.stderr
    _no_leftovers(tmp_path, ["a.tar"])


def test_progress_is_drawn_on_a_terminal_only():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        p = _Progress(10, stream)
        p.update(3, 5 << 20, force=True)
        p.clear()
    assert "\r3/10 entries  5.0 MiB" in tty.getvalue()
    assert pipe.getvalue() == ""
