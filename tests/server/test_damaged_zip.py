"""GET ?archpath= of a member of a damaged .zip: a member up to `window` bytes is checked
before the status line, so each kind of damage is a 400 naming the shard, never a connection
closed with no response (issue 16, 13). Big members found bad mid-stream: test_objects.py."""
import io
import struct
import zipfile

import pytest
import requests

DATA = b"0123456789abcdef" * 256   # 4 KiB, compressible


def zip_of(data, method):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        zf.writestr("m.bin", data)
    return bytearray(buf.getvalue())


def cd_entry(blob):
    return blob.rfind(b"PK\x01\x02")


def bad_crc(method):
    blob = zip_of(DATA, method)
    cd = cd_entry(blob)
    blob[cd + 16:cd + 20] = bytes(4)
    local = 0
    blob[local + 14:local + 18] = bytes(4)
    return bytes(blob)


def bad_local_offset():
    blob = zip_of(DATA, zipfile.ZIP_DEFLATED)
    cd = cd_entry(blob)
    blob[cd + 42:cd + 46] = struct.pack("<I", 7)   # the local header is not there
    return bytes(blob)


def wrong_size():
    blob = zip_of(DATA, zipfile.ZIP_DEFLATED)
    cd = cd_entry(blob)
    blob[cd + 24:cd + 28] = struct.pack("<I", len(DATA) - 100)   # uncompressed size
    return bytes(blob)


def bad_zip64_extra():
    blob = zip_of(DATA, zipfile.ZIP_STORED)
    cd = cd_entry(blob)
    name_len, extra_len = struct.unpack("<HH", blob[cd + 28:cd + 32])
    assert extra_len == 0
    # the sizes say "see ZIP64", the extra field that should hold them is cut short
    blob[cd + 20:cd + 28] = b"\xff" * 8
    extra = struct.pack("<HHQ", 1, 8, len(DATA))[:10]
    blob[cd + 30:cd + 32] = struct.pack("<H", len(extra))
    at = cd + 46 + name_len
    blob[at:at] = extra
    eocd = blob.rfind(b"PK\x05\x06")
    size, off = struct.unpack("<II", blob[eocd + 12:eocd + 20])
    blob[eocd + 12:eocd + 16] = struct.pack("<I", size + len(extra))
    return bytes(blob)


DAMAGE = {"bad CRC (deflated)": lambda: bad_crc(zipfile.ZIP_DEFLATED),
          "bad CRC (stored)": lambda: bad_crc(zipfile.ZIP_STORED),
          "bad local-header offset": bad_local_offset,
          "wrong uncompressed size": wrong_size,
          "bad ZIP64 extra": bad_zip64_extra}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_small_damaged_member_is_a_400_naming_the_shard(bucket, node, damage):
    name = "bad-" + damage.split()[1].strip("(") + ".zip"
    bucket.object(name).get_writer().put_content(DAMAGE[damage]())
    for url in (f"{node.url}/v1/objects/{bucket.name}/{name}?provider=ais&archpath=m.bin",
                f"{node.url}/v1/objects/{bucket.name}/{name}/m.bin?provider=ais"):
        try:
            r = requests.get(url, timeout=30)
        except requests.ConnectionError as exc:
            pytest.fail(f"{damage}: no response ({exc})")
        assert r.status_code == 400, (damage, r.status_code, r.content[:200])
        assert name in r.json()["message"], r.text
