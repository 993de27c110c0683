"""The compressed peer-stream framing (cluster/peerzip.py): blocks round-trip under every codec
and mode, `auto` compresses only where the link is slow enough, and a damaged block is refused
with a reason, never trusted."""
import os

import pytest

from getbatch.cluster import peerzip


def _plain(blocks):
    return b"".join(bytes(peerzip.unpack(b)) for b in blocks)


@pytest.mark.parametrize("mode", ["lz4", "snappy", "auto"])
def test_blocks_round_trip(mode):
    text = b"".join(b"line %d of a text that repeats\n" % i for i in range(40000))
    noise = os.urandom(300_000)
    chunks = [text[:1000], text[1000:], noise, b"", b"tail"]
    z = peerzip.Blocks(chunks, mode, 100)
    blocks = list(z)
    assert _plain(blocks) == b"".join(chunks)
    assert all(len(b) <= peerzip.WIRE_MAX for b in blocks)
    codecs = [peerzip.HEAD.unpack_from(b)[0] for b in blocks]
    assert codecs[0] != peerzip.PLAIN          # text shrinks, on a 100 Mbit/s link too
    assert z.stats["wire_bytes"] < z.stats["plain_bytes"]


def test_auto_sends_random_data_plain_and_fast_links_plain():
    noise = os.urandom(4 << 20)
    z = peerzip.Blocks([noise], "auto", 100)
    blocks = list(z)
    assert _plain(blocks) == noise
    # one try, then RESAMPLE plain blocks before the next: few compressions wasted
    assert z.stats["compressed"] == 0
    assert z.stats["wire_bytes"] == len(noise) + peerzip.HEAD.size * len(blocks)
    text = b"abcdefgh" * (1 << 20)
    fast = peerzip.Blocks([text], "auto", 10_000_000)   # a link faster than any compressor
    assert _plain(list(fast)) == text and fast.stats["compressed"] == 0


def test_damaged_blocks_are_refused():
    block = next(iter(peerzip.Blocks([b"x" * 5000], "lz4", 100)))
    codec, n = peerzip.HEAD.unpack_from(block)
    bad = [block[:-3],                                            # cut short
           peerzip.HEAD.pack(codec, n + 1) + block[5:],            # length lies
           peerzip.HEAD.pack(9, n) + block[5:],                     # unknown codec
           peerzip.HEAD.pack(peerzip.PLAIN, peerzip.BLOCK + 1),     # too long
           b"\x01"]
    for b in bad:
        with pytest.raises(peerzip.ZipError):
            peerzip.unpack(b)
    snap = next(iter(peerzip.Blocks([b"y" * 5000], "snappy", 100)))
    with pytest.raises(peerzip.ZipError, match="snappy block of another length"):
        peerzip.unpack(peerzip.HEAD.pack(peerzip.SNAPPY, 4999) + snap[5:])


def test_auto_decides_before_the_head_on_the_items():
    text = b"".join(b"word %d and again word %d\n" % (i, i) for i in range(20000))
    assert peerzip.pays(text[:peerzip.BLOCK], 100)
    assert not peerzip.pays(os.urandom(peerzip.BLOCK), 100)
    assert not peerzip.pays(text[:peerzip.BLOCK], 10_000_000)   # faster than any codec
    # the sample skips the plan frame; what was taken is replayed before the rest
    chunks = [b"P" * 100, text[:50_000], text[50_000:400_000], b"rest"]
    it = iter(chunks)
    head, sample = peerzip.take(it, 100, 1000)
    assert sample == text[:1000] and head == chunks[:2]

    class Owner:
        closed = False

        def close(self):
            Owner.closed = True
    r = peerzip.Replay(head, it, Owner())
    assert b"".join(r) == b"".join(chunks)
    r.close()
    assert Owner.closed
