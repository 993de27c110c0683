"""Compressed peer streams (setting `peer_compression`): never, lz4, snappy, or auto.

AIS's intra-cluster transports have a `compression` setting (never, always, or by ratio);
this is getbatch's. An owner compresses its answer (peerwire.py) only when the DT says it can
read it (request header ACCEPT) and the setting asks for it. The answer then has no
Content-Length but `Transfer-Encoding: chunked` and RAW_LENGTH, the length the plain answer
would have; every HTTP chunk is one block of at most BLOCK plain bytes:

    codec (u8: 0 plain, 1 lz4 block, 2 snappy raw) + plain length (u32, big-endian) + payload

The plain bytes of the blocks, in order, are exactly the plain answer, so the DT reads frames
from them as before. Each block is checked: its chunk is at most WIRE_MAX bytes, its plain
length at most BLOCK, and it decompresses to exactly that length; the blocks add up to
RAW_LENGTH. A DT holds one block, compressed and plain, at a time: the stream stays bounded.

`auto` compresses with lz4 only where it pays: it compresses a block, takes the CPU time it
cost (thread time: on a busy machine wall time would blame the codec for preemption), and
keeps compressing while the time saved on the link (`peer_link_mbit`) is more than COST times
that, by MARGIN; else it sends blocks plain and tries again every RESAMPLE blocks. The first try
is made before the answer's head, on a block of its items (not the plan frame, which always
compresses): where it does not pay, the answer goes plain with a Content-Length (chunked blocks
cost copies at both ends even when plain). After a stream where it did not pay, the process
answers plain through the zero-copy path for QUIET seconds. A block that does not shrink goes
plain whatever the codec.
"""
import struct
import time

import lz4.block

ACCEPT = "Getbatch-Accept-Compression"
RAW_LENGTH = "Getbatch-Raw-Length"
MODES = ("never", "lz4", "snappy", "auto")
PLAIN, LZ4, SNAPPY = 0, 1, 2
BLOCK = 256 << 10
HEAD = struct.Struct(">BI")
WIRE_MAX = HEAD.size + BLOCK + BLOCK // 255 + 64   # lz4's and snappy's worst case is less
MARGIN = 0.10             # auto compresses when it saves this share of the block's link time
COST = 1.5                # ... beyond COST times the compressor's CPU time (the DT's decompress
                          # and copy). 3 kept plain at 1 Gbit/s on text, where fixed lz4 won
                          # 2.36x on an idle VM and 1.25x on a loaded one
RESAMPLE = 8              # blocks between auto's tries while it sends plain
QUIET = 10.0              # seconds auto answers plain (zero copy) after a stream it did not pay on


class ZipError(ValueError):
    """A block that is not what the framing allows."""


class Verdict:
    """An owner's last word on whether `auto` pays: after a stream where it did not, answer
    plain, zero copy, for QUIET seconds. One per app (server/noderuntime.py)."""

    def __init__(self) -> None:
        self.plain_until = 0.0

    def rest_a_while(self) -> None:
        """auto did not pay here: answer plain for QUIET seconds."""
        self.plain_until = time.monotonic() + QUIET

    def resting(self) -> bool:
        return time.monotonic() < self.plain_until


def _snappy():
    import snappy   # python-snappy: imported when first used (lz4 alone needs nothing more)
    return snappy


def _compressor(codec):
    if codec == LZ4:
        return lambda b: lz4.block.compress(b, store_size=False)
    return _snappy().compress


class Blocks:
    """The owner's side: the plain answer `chunks` (an iterable of bytes, closed with it) as
    the payloads of HTTP chunks, one block each."""

    def __init__(self, chunks, mode, link_mbit, verdict=None):
        """`verdict`: the app's Verdict, told when auto did not pay on this stream."""
        self.chunks = chunks
        self.verdict = verdict
        self.mode = mode
        self.codec = SNAPPY if mode == "snappy" else LZ4
        self.compress = _compressor(self.codec)
        self.link_bps = max(link_mbit, 1) * 1e6 / 8
        self.plain_left = 0       # auto: blocks to send plain before the next try
        self.stats = {"blocks": 0, "compressed": 0, "plain_bytes": 0, "wire_bytes": 0}

    def __iter__(self):
        buf = bytearray()
        for chunk in self.chunks:
            buf += chunk
            while len(buf) >= BLOCK:
                yield self._block(memoryview(buf)[:BLOCK])
                del buf[:BLOCK]
        if buf:
            yield self._block(memoryview(buf))

    def _block(self, plain):
        n = len(plain)
        st = self.stats
        st["blocks"] += 1
        st["plain_bytes"] += n
        payload, codec = None, PLAIN
        if self.mode != "auto" or self.plain_left == 0:
            t0 = time.thread_time()   # CPU time: a busy machine's preemption is not the codec's
            packed = self.compress(plain)
            spent = time.thread_time() - t0
            if len(packed) < n:
                payload, codec = packed, self.codec
            if self.mode == "auto":
                paid = _pays(n, len(packed), spent, self.link_bps)
                self.plain_left = 0 if paid else RESAMPLE
                if not paid:
                    payload, codec = None, PLAIN
        else:
            self.plain_left -= 1
        if payload is None:
            payload = plain
        else:
            st["compressed"] += 1
        st["wire_bytes"] += HEAD.size + len(payload)
        return HEAD.pack(codec, n) + bytes(payload)

    def close(self):
        st = self.stats
        if (self.verdict is not None and self.mode == "auto" and st["blocks"] >= 2
                and 2 * st["compressed"] < st["blocks"]):
            self.verdict.rest_a_while()
        close = getattr(self.chunks, "close", None)
        if close is not None:
            close()


def unpack(block):
    """The plain bytes of one block (a chunk's payload). Raises ZipError."""
    if len(block) < HEAD.size or len(block) > WIRE_MAX:
        raise ZipError(f"compressed block of {len(block)} bytes")
    codec, n = HEAD.unpack_from(block)
    if n > BLOCK:
        raise ZipError(f"compressed block announcing {n} plain bytes (at most {BLOCK})")
    payload = memoryview(block)[HEAD.size:]
    try:
        if codec == PLAIN:
            plain = payload
        elif codec == LZ4:
            plain = lz4.block.decompress(payload, uncompressed_size=n)
        elif codec == SNAPPY:
            if _snappy_length(payload) != n:
                raise ZipError("snappy block of another length than announced")
            plain = _snappy().uncompress(bytes(payload))
        else:
            raise ZipError(f"unknown codec {codec}")
    except ZipError:
        raise
    except Exception as exc:   # lz4 and snappy raise their own errors for damaged input
        raise ZipError(f"block does not decompress: {type(exc).__name__}") from None
    if len(plain) != n:
        raise ZipError(f"block decompressed to {len(plain)} bytes, {n} announced")
    return plain


def _snappy_length(payload):
    """The plain length a raw snappy block starts with (a varint), read before trusting it."""
    n = shift = 0
    for i in range(min(5, len(payload))):
        b = payload[i]
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n
        shift += 7
    raise ZipError("snappy block without a length")


class Replay:
    """`head` (bytes already taken from `rest`) then the rest of `rest`, closing `owner`."""

    def __init__(self, head, rest, owner):
        self.head, self.rest, self.owner = head, rest, owner

    def __iter__(self):
        head, self.head = self.head, []
        yield from head
        yield from self.rest

    def close(self):
        self.owner.close()


def take(it, skip, n):
    """Chunks of iterator `it` until `n` bytes beyond the first `skip` were taken: (chunks,
    those `n` bytes or fewer at the end of the answer)."""
    chunks, got = [], 0
    for chunk in it:
        chunks.append(chunk)
        got += len(chunk)
        if got >= skip + n:
            break
    return chunks, b"".join(chunks)[skip:skip + n]


def pays(sample, link_mbit):
    """Whether lz4 on blocks like `sample` (a slice of an answer's items) saves more link
    time than COST times its CPU time, by MARGIN (auto's rule, decided before the answer)."""
    if len(sample) < 4096:
        return False
    t0 = time.thread_time()
    packed = lz4.block.compress(sample, store_size=False)
    spent = time.thread_time() - t0
    return _pays(len(sample), len(packed), spent, max(link_mbit, 1) * 1e6 / 8)


def _pays(n, packed, spent, link_bps):
    """auto's rule: packing `n` bytes into `packed` in `spent` CPU seconds saves more time on a
    link of `link_bps` bytes a second than COST times `spent`, by MARGIN."""
    return (n - packed) / link_bps - COST * spent > MARGIN * n / link_bps


def wire_mode(config, verdict):
    """What an owner answers with under `config`: None (plain, through the zero-copy path),
    or a mode of MODES. `auto` answers plain while `verdict` (a Verdict) rests after a stream
    on which it did not pay, so where compression never pays it costs one stream in a while."""
    mode = config.peer_compression
    if mode == "never" or (mode == "auto" and verdict.resting()):
        return None
    return mode
