"""The "naive pure-Python GetBatch" anchor (perf-anchors 4.9): falcon app whose response is a
generator building the TAR in request order, a pure-Python ustar header plus os.read per
object, yielding about 1 MiB at a time. Plain objects only, no validation: it is a baseline.

Serves GET /v1/ml/moss/<bucket> with the MossReq JSON body, and GET /v1/health.
"""
import json
import os

import falcon

DATA_DIR = os.environ.get("GETBATCH_DATA_DIR", "data")
CHUNK = 1 << 20


def ustar_header(name, size, mtime):
    h = bytearray(512)
    h[0:len(name)] = name
    h[100:107] = b"0000644"
    h[108:115] = b"0000000"
    h[116:123] = b"0000000"
    h[124:135] = b"%011o" % size
    h[136:147] = b"%011o" % mtime
    h[148:156] = b" " * 8
    h[156] = 0x30
    h[257:263] = b"ustar\x00"
    h[263:265] = b"00"
    h[148:155] = b"%06o\x00" % sum(h)
    return h


def tar_stream(bucket_dir, names):
    buf = bytearray()
    for name in names:
        fd = os.open(os.path.join(bucket_dir, name), os.O_RDONLY)
        try:
            st = os.fstat(fd)
            buf += ustar_header(name.encode(), st.st_size, int(st.st_mtime))
            left = st.st_size
            while left:
                # bounded reads so one huge object does not become one huge bytes
                chunk = os.read(fd, min(left, CHUNK))
                buf += chunk
                left -= len(chunk)
                if len(buf) >= CHUNK:
                    yield bytes(buf)
                    buf.clear()
        finally:
            os.close(fd)
        buf += bytes(-st.st_size % 512)
        if len(buf) >= CHUNK:
            yield bytes(buf)
            buf.clear()
    buf += bytes(1024)
    yield bytes(buf)


class Batch:
    def on_get(self, req, resp, bucket):
        doc = json.loads(req.bounded_stream.read())
        names = [e["objname"] for e in doc["in"]]
        resp.content_type = "application/x-tar"
        resp.stream = tar_stream(os.path.join(DATA_DIR, "ais", bucket), names)


class Health:
    def on_get(self, req, resp):
        resp.content_type = "text/plain"
        resp.text = ""


app = falcon.App()
app.add_route("/v1/ml/moss/{bucket}", Batch())
app.add_route("/v1/health", Health())
