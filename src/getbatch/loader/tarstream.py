"""TarStream: the entries of a TAR byte stream as it arrives, for clients (getbatch.torch).

Feed it the bytes of a GetBatch answer in pieces of any size; `feed` returns the entries that
became complete: (name, data, pax), where `pax` holds the PAX records that preceded the entry
(`GETBATCH.xxhash64` when the batch was asked with `cksum`). `ended` is True once the two
zero blocks that close a TAR were read: a stream cut before that is incomplete.
"""
from ..archive.tarblock import BLOCK, tar_pad

CKSUM_KEY = "GETBATCH.xxhash64"


class TarFormatError(ValueError):
    pass


def _octal(field):
    if field[:1] == b"\x80":      # GNU base-256
        return int.from_bytes(field[1:], "big")
    text = field.rstrip(b"\0 ").strip()
    return int(text, 8) if text else 0


def parse_pax(data):
    """The records of a PAX extended header's data; TarFormatError for a malformed one (a
    record must be longer than its own length field, or a reader never gets past it)."""
    out, pos = {}, 0
    while pos < len(data) and data[pos:pos + 1] not in (b"", b"\0"):
        sp = data.find(b" ", pos)
        field = data[pos:sp] if sp > pos else b""
        n = int(field) if field.isdigit() else 0
        if n <= sp - pos + 1 or pos + n > len(data) or data[pos + n - 1:pos + n] != b"\n":
            raise TarFormatError(f"malformed PAX record at byte {pos} of its header")
        key, _, value = data[sp + 1:pos + n - 1].partition(b"=")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += n
    return out


class TarStream:
    def __init__(self):
        self._buf = bytearray()
        self._pax = {}
        self._longname = None
        self.ended = False
        self._zeros = 0

    def feed(self, data):
        """Entries completed by `data`: [(name, bytes, pax)]."""
        if self.ended:
            return []
        self._buf += data
        out = []
        buf = self._buf
        pos = 0
        while len(buf) - pos >= BLOCK:
            head = buf[pos:pos + BLOCK]
            if not any(head):
                pos += BLOCK
                self._zeros += 1
                if self._zeros == 2:
                    self.ended = True
                    break
                continue
            self._zeros = 0
            try:
                size = _octal(bytes(head[124:136]))
            except ValueError:
                raise TarFormatError("not a TAR stream (bad size field)") from None
            total = BLOCK + size + tar_pad(size)
            if len(buf) - pos < total:
                break
            body = bytes(buf[pos + BLOCK:pos + BLOCK + size])
            pos += total
            kind = head[156:157]
            if kind == b"x":
                self._pax.update(parse_pax(body))
                continue
            if kind == b"L":
                self._longname = body.rstrip(b"\0").decode("utf-8", "surrogateescape")
                continue
            if kind == b"g":
                continue
            name = bytes(head[0:100]).rstrip(b"\0").decode("utf-8", "surrogateescape")
            if head[257:262] == b"ustar" and head[345:346] != b"\0":
                prefix = bytes(head[345:500]).rstrip(b"\0").decode("utf-8", "surrogateescape")
                name = f"{prefix}/{name}"
            pax, self._pax = self._pax, {}
            name = pax.get("path") or self._longname or name
            self._longname = None
            if "size" in pax and (not pax["size"].isdigit() or int(pax["size"]) != size):
                raise TarFormatError(f"{name}: PAX size does not match the header")
            if kind in (b"0", b"\0", b"7"):
                out.append((name, body, pax))
        del buf[:pos]
        return out
