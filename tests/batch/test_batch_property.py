"""Random batches over random objects and shards: the output archive matches a model built
from the source bytes, entry by entry, through both output paths and in every format."""
import gzip
import io
import json
import tarfile
import zipfile

import lz4.frame
from hypothesis import HealthCheck, given, settings, strategies as st

from getbatch.batch import plan as plan_mod
from getbatch.batch.assemble import BatchOutput
from getbatch.batch.request import parse
from getbatch.store import LocalStore, Storage

from .emitting import emit_to_file

NAMES = st.text(alphabet="abcdefghij-_.ü", min_size=1, max_size=12).filter(
    lambda n: n not in (".", "..") and not n.startswith("~"))
BLOB = st.binary(max_size=3000)


def _tar(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _zip(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


SHARD_KINDS = {"s.tar": _tar, "s.tgz": lambda m: gzip.compress(_tar(m)),
               "s.tar.lz4": lambda m: lz4.frame.compress(_tar(m)), "s.zip": _zip}


def _read_archive(fmt, data):
    if fmt == "zip":
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return [(i.filename, zf.read(i)) for i in zf.infolist()]
    raw = {"tar": lambda: data, "tgz": lambda: gzip.decompress(data),
           "tar.lz4": lambda: lz4.frame.decompress(data)}[fmt]()
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        return [(m.name, tf.extractfile(m).read()) for m in tf.getmembers()]


@st.composite
def scenario(draw):
    objects = draw(st.dictionaries(NAMES, BLOB, min_size=1, max_size=6))
    members = draw(st.dictionaries(NAMES, BLOB, min_size=1, max_size=6))
    entries, want = [], []
    for _ in range(draw(st.integers(1, 25))):
        kind = draw(st.sampled_from(["obj", "member", "missing"]))
        if kind == "obj":
            name = draw(st.sampled_from(sorted(objects)))
            data = objects[name]
            e = {"objname": name}
            if data and draw(st.booleans()):
                start = draw(st.integers(0, len(data) - 1))
                length = draw(st.sampled_from([-1, len(data) - start]))
                e.update(start=start, length=length)
                data = data[start:]
            entries.append(e)
            want.append((f"b/{name}", data))
        elif kind == "member":
            shard = draw(st.sampled_from(sorted(SHARD_KINDS)))
            m = draw(st.sampled_from(sorted(members)))
            entries.append({"objname": shard, "archpath": m})
            want.append((f"b/{shard}/{m}", members[m]))
        else:
            entries.append({"objname": "no-such-object"})
            want.append(("__404__/b/no-such-object", b""))
    fmt = draw(st.sampled_from(["tar", "tgz", "tar.lz4", "zip"]))
    return objects, members, entries, want, fmt


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(scenario())
def test_random_batches_match_the_model(tmp_path_factory, sc):
    objects, members, entries, want, fmt = sc
    tmp = tmp_path_factory.mktemp("prop")
    store = LocalStore(tmp / "data", fsync=False)
    store.create_bucket("b")
    for name, data in objects.items():
        store.put("b", name, io.BytesIO(data), len(data))
    for shard, make in SHARD_KINDS.items():
        blob = make(sorted(members.items()))
        store.put("b", shard, io.BytesIO(blob), len(blob))
    req = parse(json.dumps({"in": entries, "coer": True, "mime": fmt}).encode(), "b")
    outputs = []
    for path in ("iterate", "emit") if fmt == "tar" else ("iterate",):
        p = plan_mod.build(req, Storage({'ais': store}), max_soft_errs=len(entries))
        out = BatchOutput(p, fmt, multipart=False)
        if path == "iterate":
            body = b"".join(out)
        else:
            emit_to_file(out, tmp / "out")
            body = (tmp / "out").read_bytes()
        out.close()
        if out.content_length is not None:
            assert len(body) == out.content_length
        outputs.append(body)
    assert len(set(outputs)) == 1
    assert _read_archive(fmt, outputs[0]) == want
