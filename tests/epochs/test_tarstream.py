"""The loader's TarStream against tarfile: any names (long, non-ASCII: PAX and GNU headers),
checksum records, fed in pieces of any size; a cut stream never reads as ended."""
import io
import tarfile

import xxhash
import pytest
from hypothesis import given, settings, strategies as st

from getbatch.archive.cksum import PAX_KEY
from getbatch.archive.writers import TarWriter
from getbatch.loader.tarstream import TarFormatError, TarStream

# no trailing "/": object names never end with one, and tarfile (the oracle) strips it from a
# PAX path, so "\xa0/" would read back as "\xa0"
names = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1,
                max_size=300).filter(lambda n: not n.endswith("/"))
entries = st.lists(st.tuples(names, st.binary(max_size=2000)), min_size=1, max_size=6)


def _feed(data, cuts):
    ts, out, pos = TarStream(), [], 0
    for c in sorted(cuts) + [len(data)]:
        out += ts.feed(data[pos:c])
        pos = max(pos, c)
    return ts, out


@settings(max_examples=60, deadline=None)
@given(entries, st.lists(st.integers(0, 20000), max_size=8), st.booleans())
def test_entries_and_checksums_in_any_pieces(items, cuts, gnu):
    if gnu:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
            for name, data in items:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        raw = buf.getvalue()
    else:
        sink = io.BytesIO()
        with TarWriter(sink) as w:
            for name, data in items:
                w.add(name, data, cksum=xxhash.xxh64_hexdigest(data))
        raw = sink.getvalue()
    ts, got = _feed(raw, [c % (len(raw) + 1) for c in cuts])
    assert ts.ended
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r") as tf:
        want = [(m.name, tf.extractfile(m).read()) for m in tf]
        end = tf.offset   # where the last entry ends, before the zero blocks
    assert [(n, d) for n, d, _ in got] == want
    if not gnu:
        assert all(p[PAX_KEY] == xxhash.xxh64_hexdigest(d) for _, d, p in got)
    cut, partial = _feed(raw[:end - 1], [])
    assert not cut.ended and len(partial) < len(want)


def _pax_entry(records):
    """A PAX header carrying `records` as its data, then a one-byte file."""
    head = tarfile.TarInfo("././@PaxHeader")
    head.type, head.size = tarfile.XHDTYPE, len(records)
    body = tarfile.TarInfo("f")
    body.size = 1
    pad = b"\0" * (-len(records) % 512)
    return (head.tobuf(tarfile.USTAR_FORMAT) + records + pad
            + body.tobuf(tarfile.USTAR_FORMAT) + b"x" + b"\0" * 511 + b"\0" * 1024)


@pytest.mark.parametrize("records", [
    b"0 x\n",                 # a zero length: a reader that trusts it never moves on
    b"2 \n",                   # shorter than its own length field
    b"abc path=x\n",           # not a number
    b"99 path=x\n",            # longer than the header's data
    b"nospace\n",              # no length field at all
    b"12 path=abc!",           # the record does not end with a newline
    b"11 size=zz\n",           # a size that is not a number
    b"10 size=7\n",            # a size that is not the header's
])
def test_hostile_pax_records_are_a_format_error(records):
    with pytest.raises(TarFormatError):
        TarStream().feed(_pax_entry(records))


def test_well_formed_pax_record_is_read():
    (name, data, pax), = TarStream().feed(_pax_entry(b"11 path=ok\n"))
    assert (name, data) == ("ok", b"x")
