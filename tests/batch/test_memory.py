"""Memory of a big batch: what a GetBatch holds per entry from parse to the last byte sent
(tracemalloc, which is deterministic where RSS and time are not). Two batch sizes, both
wider than the output's windows, so what is fixed per request cancels out and the
difference is what each entry costs."""
import io
import json
import os
import tracemalloc

import pytest

from getbatch.batch import plan as batch_plan
from getbatch.batch.assemble import BatchOutput
from getbatch.batch.request import parse
from getbatch.store import LocalStore, Storage

OBJECTS = 300
# bytes per entry; before the compact plan and request a batch held ~450 (bench/RESULTS-cluster.md)
LIMIT = 160


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    store = LocalStore(tmp_path_factory.mktemp("mem"))
    store.create_bucket("bk")
    for i in range(OBJECTS):
        store.put("bk", f"dir/obj-{i:05d}.bin", io.BytesIO(os.urandom(100)))
    return Storage({"ais": store})


def _peak(body, run):
    """tracemalloc's peak (bytes) of `run(body)`, the body itself not counted."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        run(body)
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def _per_entry(make_body, run, small=9_000, big=25_000):
    peaks = [_peak(make_body(n), run) for n in (small, big)]
    return (peaks[1] - peaks[0]) / (big - small)


def _bodies(entry):
    def make(n):
        return json.dumps({"in": [entry(f"dir/obj-{i % OBJECTS:05d}.bin") for i in range(n)],
                           "strm": True}).encode()
    return make


def _single_node(storage, sink):
    def run(body):
        req = parse(body, "bk")
        out = BatchOutput(batch_plan.build(req, storage), req.mime, multipart=False)
        del req
        try:
            assert out.emit_to(sink) == out.content_length
        finally:
            out.close()
    return run


@pytest.mark.slow
@pytest.mark.parametrize("form", ["names", "sdk"])
def test_single_node_bytes_per_entry(storage, form):
    """Parse, plan and send: the names alone (bucket in the URL), and what the SDK sends
    (objname, bucket and provider in every entry)."""
    entry = ((lambda n: {"objname": n}) if form == "names"
             else (lambda n: {"objname": n, "bucket": "bk", "provider": "ais"}))
    sink = os.open(os.devnull, os.O_WRONLY)
    try:
        per = _per_entry(_bodies(entry), _single_node(storage, sink))
    finally:
        os.close(sink)
    assert per < LIMIT, f"{per:.0f} bytes per entry"


@pytest.mark.parametrize("extra", [{}, {"bucket": "bk"}, {"bucket": "bk", "provider": "s3"}])
def test_compact_entries_parse_as_the_general_path(extra):
    """A request of whole objects of one bucket decodes compactly (request.Entries, also past
    the size where its bucket gets a decoder of its own); every entry reads back as the
    general decoder gives it (forced here by a key in another case)."""
    for n in (3, 5000):
        ins = [dict({"objname": f"d/o{i}"}, **extra) for i in range(n)]
        compact = parse(json.dumps({"in": ins}).encode(), "dflt")
        general = parse(json.dumps({"in": [dict(e, OBJNAME=e["objname"]) for e in ins]})
                        .replace('"objname"', '"x"').encode(), "dflt")
        assert type(compact.entries).__name__ == "Entries"
        assert isinstance(general.entries, list)
        assert list(compact.entries) == general.entries
        assert compact.entries[-1] == general.entries[-1]
        assert compact.entries[1:3] == general.entries[1:3]
