"""A hostile origin for tests: a small HTTP server in the test process that lies.

It serves objects `/<bucket>/<key>` (so it answers both an ht:// bucket, whose origin URL is
`<url>/<bucket>`, and path-style S3 GET/HEAD for aws:// buckets). What each object does is set
per key in `objects`: honest bytes with ranges and an ETag, or one lie:
- `wrong_range`: a 206 whose Content-Range and bytes are of the object's start, whatever asked;
- `swap`: HEAD says ETag "v1", the GET that delivers the bytes says "v2" (other bytes, same size);
- `bad_length`: `Content-Length: abc`;
- `short`: announces the whole size and closes after 10 bytes;
- `redirect`: 302 to the URL given;
- `no_ranges`: ignores Range (a 200 with the whole object), as some plain origins do.
An object made with `etag=""` sends no ETag and, as RFC 9110 says, fails any If-Match (412).
Requests are counted per path in `hits`.
"""
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Obj:
    def __init__(self, data, lie="", etag='"v1"', location="", other=None):
        self.data = data
        self.lie = lie
        self.etag = etag
        self.location = location
        self.other = other if other is not None else bytes(reversed(data))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_HEAD(self):
        self._answer(head=True)

    def do_GET(self):
        self._answer(head=False)

    def _answer(self, head):
        srv = self.server
        path = self.path.split("?")[0]
        srv.hits[path] = srv.hits.get(path, 0) + 1
        srv.headers_seen.append(dict(self.headers))
        obj = srv.objects.get(path)
        if obj is None:  # a bucket answers 200 (S3 HEAD bucket) when it holds objects
            bucket = any(k.startswith(path.rstrip("/") + "/") for k in srv.objects)
            return self._send(200 if bucket and path.count("/") == 1 else 404, {}, b"", head)
        if obj.lie == "redirect":
            return self._send(302, {"Location": obj.location}, b"", head)
        data, etag = obj.data, obj.etag
        if obj.lie == "swap" and not head:
            data, etag = obj.other, '"v2"'
        if not etag and self.headers.get("If-Match"):
            return self._send(412, {}, b"", head)
        hdr = {"Last-Modified": "Tue, 14 Nov 2023 22:13:20 GMT", "Accept-Ranges": "bytes"}
        if etag:
            hdr["ETag"] = etag
        m = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
        if obj.lie == "bad_length":
            hdr["Content-Length"] = "abc"
            return self._send(200, hdr, b"", True, length_set=True)
        if obj.lie == "short" and not head:
            hdr["Content-Length"] = str(len(data))
            self._send(200, hdr, data[:10], False, length_set=True)
            self.close_connection = True
            return
        if m and not head and obj.lie != "no_ranges":
            first, last = int(m[1]), min(int(m[2]), len(data) - 1)
            if obj.lie == "wrong_range":
                first, last = 0, last - first
            hdr["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
            return self._send(206, hdr, data[first:last + 1], head)
        return self._send(200, hdr, data, head)

    def _send(self, status, hdr, body, head, length_set=False):
        self.send_response(status)
        for k, v in hdr.items():
            self.send_header(k, v)
        if not length_set:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)


class HostileOrigin:
    def __init__(self):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.objects = {}
        self.server.hits = {}
        self.server.headers_seen = []
        self.objects = self.server.objects
        self.hits = self.server.hits
        self.headers_seen = self.server.headers_seen
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
