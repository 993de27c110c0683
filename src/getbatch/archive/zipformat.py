"""ZIP record layouts (PKWARE APPNOTE), defined once for the directory readers (zipcd_py.py and
ext/_czipcd.pyx), ZipShard and the ZIP writer.

Each `Record` is little-endian and starts with its 4-byte signature: `.struct` packs and
unpacks it whole, `.offset[field]` is where a field sits (for the Cython reader, which reads
fields in place), `.pack(...)` packs every field after the signature.
"""
import struct

U16 = 0xFFFF
U32 = 0xFFFFFFFF
MAX_COMMENT = U16            # an archive comment's length field is 16 bits
ZIP64_EXTRA = 1              # extra-field id of the ZIP64 sizes/offset
FLAG_ENCRYPTED = 0x0001
FLAG_DESCRIPTOR = 0x0008     # sizes and CRC follow the data
FLAG_UTF8 = 0x0800
STORED, DEFLATED = 0, 8


class Record:
    __slots__ = ("signature", "struct", "size", "offset", "_magic")

    def __init__(self, signature: bytes, fields: list[tuple[str, str]]) -> None:
        self.signature = signature
        self._magic = int.from_bytes(signature, "little")
        codes = "".join(code for _, code in fields)
        self.struct = struct.Struct("<I" + codes)
        self.size = self.struct.size
        self.offset: dict[str, int] = {}
        pos = 4
        for name, code in fields:
            self.offset[name] = pos
            pos += struct.calcsize("<" + code)

    def pack(self, *fields: int) -> bytes:
        return self.struct.pack(self._magic, *fields)


LOCAL = Record(b"PK\x03\x04", [
    ("version", "H"), ("flags", "H"), ("method", "H"), ("time", "H"), ("date", "H"),
    ("crc", "I"), ("csize", "I"), ("usize", "I"), ("name_len", "H"), ("extra_len", "H")])
CENTRAL = Record(b"PK\x01\x02", [
    ("made_by", "H"), ("version", "H"), ("flags", "H"), ("method", "H"), ("time", "H"),
    ("date", "H"), ("crc", "I"), ("csize", "I"), ("usize", "I"), ("name_len", "H"),
    ("extra_len", "H"), ("comment_len", "H"), ("disk", "H"), ("int_attr", "H"),
    ("ext_attr", "I"), ("offset", "I")])
END = Record(b"PK\x05\x06", [
    ("disk", "H"), ("cd_disk", "H"), ("disk_entries", "H"), ("entries", "H"),
    ("cd_size", "I"), ("cd_offset", "I"), ("comment_len", "H")])
END64 = Record(b"PK\x06\x06", [
    ("record_size", "Q"), ("made_by", "H"), ("version", "H"), ("disk", "I"), ("cd_disk", "I"),
    ("disk_entries", "Q"), ("entries", "Q"), ("cd_size", "Q"), ("cd_offset", "Q")])
LOCATOR64 = Record(b"PK\x06\x07", [("disk", "I"), ("end64_offset", "Q"), ("disks", "I")])
DESCRIPTOR = Record(b"PK\x07\x08", [("crc", "I"), ("csize", "I"), ("usize", "I")])
DESCRIPTOR64 = Record(b"PK\x07\x08", [("crc", "I"), ("csize", "Q"), ("usize", "Q")])
