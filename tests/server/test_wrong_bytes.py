"""No wrong bytes: a shard replaced by another of the same size, while and after it is read,
is never served with the other version's index; tampered indexes are rebuilt, not trusted."""
import io
import os
import tarfile
import threading

import pytest
import requests

from tests.support.apps import app_client, create_bucket
from tests.support.nodes import Node, serve_argv


def shard(order, payload):
    """A .tar whose members come in `order`, each holding `payload[name]`: two orders of the
    same members make two shards of exactly the same size with different layouts."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name in order:
            ti = tarfile.TarInfo(name)
            ti.size = len(payload[name])
            ti.mtime = 0
            tf.addfile(ti, io.BytesIO(payload[name]))
    return buf.getvalue()


@pytest.mark.slow
def test_same_size_reuploads_never_mix_versions(tmp_path):
    a_payload = {f"m{i}": bytes([65 + i]) * 1500 for i in range(6)}
    b_payload = {f"m{i}": bytes([97 + i]) * 1500 for i in range(6)}
    versions = [shard(sorted(a_payload), a_payload), shard(sorted(b_payload, reverse=True), b_payload)]
    assert len(versions[0]) == len(versions[1]) and versions[0] != versions[1]
    n = Node(tmp_path / "data", tmp_path / "server.log", serve_argv(workers=2, threads=4))
    try:
        base = f"{n.url}/v1/objects/wb"
        requests.post(f"{n.url}/v1/buckets/wb", json={"action": "create-bck"}).raise_for_status()
        s = requests.Session()
        bad = []
        stop = threading.Event()

        def reader():
            r = requests.Session()
            while not stop.is_set():
                got = r.get(f"{base}/s.tar", params={"archpath": "m3"}).content
                if got not in (a_payload["m3"], b_payload["m3"]):
                    bad.append(("archpath", got[:300]))
                body = {"in": [{"objname": "s.tar", "archpath": "m1"}], "strm": True}
                got = r.get(f"{n.url}/v1/ml/moss/wb", json=body).content
                with tarfile.open(fileobj=io.BytesIO(got)) as tf:
                    data = tf.extractfile(tf.getmembers()[0]).read()
                if data not in (a_payload["m1"], b_payload["m1"]):
                    bad.append(("moss", data[:8]))

        s.put(f"{base}/s.tar", data=versions[1]).raise_for_status()
        path = tmp_path / "data" / "ais" / "wb" / "s.tar"
        threads = [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            for i in range(300):
                which = i % 2
                s.put(f"{base}/s.tar", data=versions[which]).raise_for_status()
                # as a coarse clock (or `touch -d`) would leave it: same size, same mtime
                os.utime(path, ns=(10**18, 10**18))
                payload = (a_payload, b_payload)[which]
                # right after the PUT answered, only the new version may be read
                assert s.get(f"{base}/s.tar", params={"archpath": "m4"}).content == payload["m4"], i
                body = {"in": [{"objname": "s.tar", "archpath": "m2"}, {"objname": "s.tar/m5"}],
                        "strm": True}
                got = s.get(f"{n.url}/v1/ml/moss/wb", json=body).content
                with tarfile.open(fileobj=io.BytesIO(got)) as tf:
                    datas = [tf.extractfile(m).read() for m in tf.getmembers()]
                assert datas == [payload["m2"], payload["m5"]], i
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert bad == []
    finally:
        n.stop()


def _moss_members(app, bucket, obj, names):
    body = {"in": [{"objname": obj, "archpath": k} for k in names], "strm": True}
    r = app.simulate_get(f"/v1/ml/moss/{bucket}", json=body)
    assert r.status_code == 200, r.text
    with tarfile.open(fileobj=io.BytesIO(r.content)) as tf:
        return [tf.extractfile(m).read() for m in tf.getmembers()]


def test_tampered_persisted_indexes_are_rebuilt(tmp_path):
    """In process: each app is a node started afresh over the data dir (its own shard memory),
    so what it knows of the shard comes from the persisted index."""
    payload = {f"f{i}": os.urandom(700 + i) for i in range(8)}
    blob = shard(sorted(payload), payload)
    app = app_client(tmp_path / "data")
    create_bucket(app, "tb")
    assert app.simulate_put("/v1/objects/tb/s.tar", body=blob).status_code == 200
    assert app.simulate_get("/v1/objects/tb/s.tar", params={"archpath": "f3"}).content == payload["f3"]
    index_dir = tmp_path / "data" / ".sys" / "shard-index"
    files = [p for p in index_dir.iterdir() if p.is_file()]
    assert files, "the index was not persisted"
    originals = {p: p.read_bytes() for p in files}
    tamperings = [
        lambda b: b[:-20] + bytes(20),                     # sizes/offsets zeroed
        lambda b: b.replace(b"f3", b"f4").replace(b"f4", b"f3", 1),  # names swapped
        lambda b: bytes(x ^ 0x01 for x in b[: len(b) // 2]) + b[len(b) // 2:],
        lambda b: b[: len(b) // 3],                        # truncated
        lambda b: b"\x00" * 10,
    ]
    for tamper in tamperings:
        for p, data in originals.items():
            p.write_bytes(tamper(data))
        app = app_client(tmp_path / "data")
        for name in ("f3", "f4", "f0", "f7"):
            r = app.simulate_get("/v1/objects/tb/s.tar", params={"archpath": name})
            assert r.status_code == 200 and r.content == payload[name], (tamper, name)
        assert _moss_members(app, "tb", "s.tar", sorted(payload)) == [payload[k] for k in sorted(payload)]
