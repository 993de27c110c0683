"""Per-entry content checksums in output archives (a GetBatch asked with `cksum`).

Each entry's XXH64 (seed 0, 16 lower-case hex digits: the hash the store keeps, AIS's
"xxhash2") travels with it:
- TAR (and .tgz, .tar.lz4): a PAX extended header just before the entry's own header(s),
  holding the record `GETBATCH.xxhash64=<hex>` (readers that do not know the key ignore it;
  Python's tarfile shows it in `TarInfo.pax_headers`). It costs 1024 bytes per entry.
- ZIP: an extra field of id 0x4247 ("GB") with the 8-byte hash, little-endian, in the local
  header and in the central directory (`ZipInfo.extra`).
"""
import struct

from .tarblock import BLOCK
from .tarheader_py import pax_extended, pax_record

PAX_KEY = "GETBATCH.xxhash64"
ZIP_EXTRA_ID = 0x4247
PAX_CKSUM_SIZE = 2 * BLOCK     # what the record adds to a TAR entry


def pax_cksum(hexdigest: str) -> bytes:
    """The PAX extended header (header block and padded data) carrying `hexdigest`."""
    return pax_extended(pax_record(PAX_KEY.encode(), hexdigest.encode()))


def zip_cksum_extra(hexdigest: str) -> bytes:
    return struct.pack("<HHQ", ZIP_EXTRA_ID, 8, int(hexdigest, 16))


def zip_cksum_of(extra: bytes) -> str | None:
    """The hex XXH64 in a ZIP extra field blob, or None."""
    pos = 0
    while pos + 4 <= len(extra):
        hid, n = struct.unpack_from("<HH", extra, pos)
        if hid == ZIP_EXTRA_ID and n == 8:
            return "%016x" % struct.unpack_from("<Q", extra, pos + 4)[0]
        pos += 4 + n
    return None
