"""`getbatch get`: run one GetBatch against a node and write the archive to a file.

The request is streaming (`strm`), so the archive starts arriving at once and memory stays
flat whatever its size. It is written to a temporary name next to the output and renamed
only once it is known complete: the byte count the server promised (Content-Length) was
met, the compressed stream ended properly, and the archive holds exactly one entry per
requested name, up to its end-of-archive marker. Anything else (an error answer, a cut
connection, a short or malformed archive) removes the temporary file and is one line on
stderr with a non-zero exit: a complete-looking file is never left behind by a failed batch.

Names: `bucket/object` (the first component is the bucket), or with `--bucket B` an object
of B. `shard.tar/member` names a file inside a shard: the server resolves a name that is
not an object to a member of the shard at its archive-extension prefix.

A node with `auth` on wants a bearer token: `--token`, else `$AIS_AUTHN_TOKEN` (what the SDK
reads); `auth_headers` is how every command of the CLI that talks to a node sends it.

A node at its budget answers 429: the request is sent again after its Retry-After, a few
times, as the SDK does. On a terminal, a progress line (entries and bytes) is redrawn on stderr
at most ten times a second; a summary line ends the run either way.
"""
import http.client
import json
import os
import secrets
import sys
import time
import urllib.parse
import zipfile
import zlib

from .archive import ArchiveError
from .archive.tarscan import scan

DEFAULT_URL = "http://127.0.0.1:51080"
FORMATS = {"tar": ".tar", "tgz": ".tgz", "tar.lz4": ".tar.lz4", "zip": ".zip"}
MISSING_DIR = "__404__/"
_CHUNK = 1 << 20
_REDRAW = 0.1   # seconds between progress redraws
BUSY_ATTEMPTS = 6    # a node answering 429 is asked this many times in all
BUSY_WAIT = 1.0      # seconds between asks when a 429 has no Retry-After
BUSY_WAIT_MAX = 30.0


TOKEN_ENV = "AIS_AUTHN_TOKEN"


class GetError(Exception):
    """The batch failed; the message is one line for the person who ran the command."""


def add_token_option(parser):
    """`--token` on a command that talks to a node."""
    parser.add_argument("--token", default=None,
                        help=f"bearer token for a node with auth on (default ${TOKEN_ENV})")


def auth_headers(token=None):
    """The Authorization header for `token`, else $AIS_AUTHN_TOKEN; {} without either."""
    token = token or os.environ.get(TOKEN_ENV)
    return {"Authorization": f"Bearer {token}"} if token else {}


def parse_names(names, bucket=None):
    """MossIn entries for `names`. Without `bucket`, each name is `bucket/object`."""
    entries = []
    for name in names:
        if not name:
            raise GetError("an empty name")
        if bucket is not None:
            entries.append({"objname": name})
            continue
        b, sep, obj = name.partition("/")
        if not sep or not b or not obj:
            raise GetError(f"{name!r} names no bucket: write BUCKET/OBJECT or give --bucket")
        entries.append({"objname": obj, "bucket": b})
    return entries


def read_names(path):
    """The names listed in `path` ('-': stdin), one a line; blank lines and lines starting
    with '#' are skipped."""
    try:
        if path == "-":
            lines = sys.stdin.read().splitlines()
        else:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
    except OSError as exc:
        raise GetError(f"cannot read names from {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise GetError(f"cannot read names from {path}: not UTF-8 text") from None
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


class _TarCounter:
    """Counts the entries of a TAR stream as it passes (headers only; member data is
    skipped), so progress shows entries and the end can be checked."""

    def __init__(self):
        self.entries = 0
        self.missing = 0
        self.done = False
        self._buf = b""
        self._skip = 0

    def feed(self, data):
        if self.done or not data:
            return
        if self._skip:
            if len(data) <= self._skip:
                self._skip -= len(data)
                return
            data = data[self._skip:]
            self._skip = 0
        buf = self._buf + data if self._buf else data
        members, pos, self.done = scan(buf, partial=True, shard="the response")
        for m in members:
            self.entries += 1
            if m.name.startswith(MISSING_DIR):
                self.missing += 1
        if pos >= len(buf):
            self._skip, self._buf = pos - len(buf), b""
        else:
            self._buf = bytes(buf[pos:])


class _Decoder:
    """The TAR bytes inside a tgz or tar.lz4 stream; `finished` once the stream ended
    properly (gzip trailer or lz4 end mark read)."""

    def __init__(self, fmt):
        if fmt == "tgz":
            self._d = zlib.decompressobj(wbits=31)
        else:
            import lz4.frame
            self._d = lz4.frame.LZ4FrameDecompressor()

    def feed(self, data):
        try:
            return self._d.decompress(data)
        except (zlib.error, RuntimeError) as exc:
            raise GetError(f"the response is not a valid compressed stream: {exc}") from None

    @property
    def finished(self):
        return self._d.eof


class _Progress:
    """One line on stderr, redrawn in place; nothing unless stderr is a terminal."""

    def __init__(self, total, stream=None):
        self.stream = stream or sys.stderr
        self.on = self.stream.isatty()
        self.total = total
        self.t0 = time.monotonic()
        self._next = 0.0

    def update(self, entries, nbytes, force=False):
        now = time.monotonic()
        if not self.on or (now < self._next and not force):
            return
        self._next = now + _REDRAW
        rate = nbytes / max(now - self.t0, 1e-6)
        done = (f"{self.total} entries" if entries is None else f"{entries} entries"
                if self.total is None else f"{entries}/{self.total} entries")
        self.stream.write(f"\r{done}  {human(nbytes)}  {human(rate)}/s \x1b[K")
        self.stream.flush()

    def clear(self):
        if self.on:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def human(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def error_text(resp, body):
    """The message of an AIS error body, or the start of whatever came."""
    text = body.decode("utf-8", "replace").strip()
    try:
        doc = json.loads(text)
        if isinstance(doc, dict) and doc.get("message"):
            text = str(doc["message"])
    except ValueError:
        pass
    return f"{resp.status} {text[:500] or resp.reason}"


def get_batch(url, entries, out, fmt="tar", coer=False, bucket=None, timeout=120.0,
              progress=None, step=None, token=None, onob=False):
    """Run one GetBatch of `entries` (or of `step`, {"plan", "epoch", "rank", "step"} of an
    epoch plan: then `entries` is None) and write the archive to `out` (a path); `token`:
    see auth_headers; `onob`: names in the archive without their bucket. Returns (entries,
    missing, bytes). Raises GetError; `out` is then not created or changed."""
    if fmt not in FORMATS:
        raise GetError(f"unknown format {fmt!r} (expecting {', '.join(FORMATS)})")
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise GetError(f"invalid URL {url!r}: expecting http://HOST:PORT")
    path = u.path.rstrip("/") + "/v1/ml/moss"
    if bucket is not None:
        path += "/" + urllib.parse.quote(bucket, safe="")
    what = {"in": entries} if step is None else step
    body = json.dumps(dict(what, mime=FORMATS[fmt], strm=True, coer=coer, onob=onob)).encode()
    conn_cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(u.hostname, u.port, timeout=timeout)
    tmp = None
    try:
        for attempt in range(BUSY_ATTEMPTS):
            try:
                conn.request("GET", path, body=body,
                             headers={"Content-Type": "application/json", "Accept": "*/*",
                                      **auth_headers(token)})
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                raise GetError(f"cannot reach {url}: {exc}") from None
            if resp.status != 429 or attempt == BUSY_ATTEMPTS - 1:
                break
            # the node is at its budget: wait as it asks (as the SDK does), then ask again
            conn.close()   # the next ask on a fresh connection, whatever the node does with this one
            time.sleep(retry_after_of(resp))
        if resp.status != 200:
            try:
                text = resp.read(64 << 10)
            except (OSError, http.client.HTTPException):
                text = b""
            raise GetError(f"GetBatch refused: {error_text(resp, text)}")
        directory = os.path.dirname(os.path.abspath(out))
        tmp = os.path.join(directory, f".{os.path.basename(out)}.part-{secrets.token_hex(4)}")
        try:
            f = open(tmp, "xb")
        except OSError as exc:
            tmp = None
            raise GetError(f"cannot write {out}: {exc.strerror}") from None
        try:
            with f:
                entries_seen, missing, nbytes = receive_batch(resp, f, fmt, progress)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:   # writing: a full disk, say (reading errors are GetErrors)
            raise GetError(f"cannot write {out}: {exc.strerror or exc}") from None
        if fmt == "zip":
            entries_seen, missing = _zip_entries(tmp)
        if entries is not None and entries_seen != len(entries):
            raise GetError(f"incomplete archive: {entries_seen} of {len(entries)} entries")
        os.replace(tmp, out)
        tmp = None
        return entries_seen, missing, nbytes
    finally:
        conn.close()
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def retry_after_of(resp):
    """Seconds a 429 asks to wait (Retry-After in seconds), within [0, BUSY_WAIT_MAX]."""
    try:
        secs = float(resp.getheader("Retry-After") or BUSY_WAIT)
    except ValueError:
        secs = BUSY_WAIT
    return min(max(secs, 0.0), BUSY_WAIT_MAX)


def receive_batch(resp, f, fmt, progress):
    """Copy the body to `f`, counting entries; (entries, missing, bytes). Raises GetError when
    the body is cut short or not a well-formed archive."""
    length = resp.getheader("Content-Length")
    expected = int(length) if length and length.isdigit() else None   # None: chunked
    counter = _TarCounter() if fmt != "zip" else None
    decoder = _Decoder(fmt) if fmt in ("tgz", "tar.lz4") else None
    nbytes = 0
    while True:
        try:
            data = resp.read1(_CHUNK)
        except http.client.IncompleteRead:
            raise GetError(f"the stream was cut short after {nbytes} bytes (the connection "
                           "closed in the middle of the body)") from None
        except (OSError, http.client.HTTPException) as exc:
            raise GetError(f"the stream broke after {nbytes} bytes: {exc!r}") from None
        if not data:
            break
        f.write(data)
        nbytes += len(data)
        if counter is not None:
            try:
                counter.feed(decoder.feed(data) if decoder is not None else data)
            except ArchiveError as exc:
                raise GetError(f"the response is not a valid archive: {exc}") from None
        if progress is not None:
            progress.update(counter.entries if counter else None, nbytes)
    if expected is not None and nbytes != expected:
        raise GetError(f"the stream was cut short: {nbytes} of {expected} bytes")
    if decoder is not None and not decoder.finished:
        raise GetError(f"the stream was cut short after {nbytes} bytes (no end of the "
                       "compressed stream)")
    if counter is not None and not counter.done:
        raise GetError(f"the stream was cut short after {nbytes} bytes (no end of archive)")
    if progress is not None:
        progress.update(counter.entries if counter else None, nbytes, force=True)
    return (counter.entries if counter else 0), (counter.missing if counter else 0), nbytes


def _zip_entries(path):
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise GetError(f"the response is not a valid zip archive: {exc}") from None
    return len(names), sum(1 for n in names if n.startswith(MISSING_DIR))


def _request(args):
    """(entries or None, epoch step or None, format, coer, onob) of `getbatch get`'s arguments:
    NAMEs, --from, --template, --spec (AIS's `ais ml get-batch` inputs) or --epoch."""
    from .archive.formats import format_from_name
    from .mlspec import SpecError, load_spec, template_names
    given = [bool(args.names), bool(args.from_file), bool(args.epoch), bool(args.template)]
    if sum(given) > 1 or not (any(given) or args.spec) or (args.epoch and args.spec):
        raise GetError("give names, --from FILE, --template T or --epoch ID (one of them), "
                       "and/or --spec FILE (not with --epoch)")
    try:
        spec_entries, flags = load_spec(args.spec) if args.spec else ([], {})
        if args.template:
            if args.bucket is None:
                raise GetError("--template needs --bucket")
            names = template_names(args.template)
        else:
            names = args.names or (read_names(args.from_file) if args.from_file else [])
            if args.from_file and not names:
                raise GetError(f"no names in {args.from_file}")
    except SpecError as exc:
        raise GetError(str(exc)) from None
    step = entries = None
    if args.epoch:
        step = {"plan": args.epoch, "epoch": args.epoch_number, "rank": args.rank,
                "step": args.step}
    else:
        entries = spec_entries + parse_names(names, args.bucket)
        if not entries:
            raise GetError(f"spec {args.spec} names no entries")
    # as AIS: the command line (--format, else OUT's extension) wins over the spec
    fmt = args.format or (format_from_name(args.output) if args.output else None)
    if fmt is None and flags.get("mime"):
        fmt = str(flags["mime"]).strip().lower().lstrip(".").replace("tar.gz", "tgz")
    fmt = fmt or "tar"
    coer = args.coer or bool(flags.get("coer"))
    onob = args.omit_src_bck or bool(flags.get("onob"))
    return entries, step, fmt, coer, onob


def run(args):
    """`getbatch get` with parsed `args`; returns the exit status."""
    try:
        entries, step, fmt, coer, onob = _request(args)
    except GetError as exc:
        print(f"getbatch get: {exc}", file=sys.stderr)
        return 2
    out = args.output or "batch" + FORMATS.get(fmt, "")
    try:
        progress = _Progress(len(entries) if entries is not None else None)
        t0 = time.monotonic()
        try:
            n, missing, nbytes = get_batch(args.url, entries, out, fmt, coer, args.bucket,
                                           progress=progress, step=step, token=args.token,
                                           onob=onob)
        finally:
            progress.clear()
    except GetError as exc:
        print(f"getbatch get: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"getbatch get: interrupted; {out} not written", file=sys.stderr)
        return 130
    secs = time.monotonic() - t0
    extra = f" ({missing} missing, as __404__/ placeholders)" if missing else ""
    print(f"{out}: {n} entries{extra}, {human(nbytes)} in {secs:.2f} s "
          f"({human(nbytes / max(secs, 1e-6))}/s)", file=sys.stderr)
    return 0


def run_lhotse(args):
    """`getbatch lhotse-get-batch`: the cuts of a Lhotse manifest, `--batch-size` at a time,
    each batch into its own archive named by `--output-template` (or all into OUT); returns
    the exit status."""
    from .mlspec import SpecError, format_of, read_cuts, template_names
    try:
        if (args.output is None) == (args.output_template is None):
            raise GetError("give an output archive OUT, or --output-template with --batch-size")
        if args.batch_size is not None and args.batch_size < 1:
            raise GetError(f"invalid --batch-size {args.batch_size}: expecting 1 or more")
        if args.output_template is not None and args.batch_size is None:
            raise GetError("--output-template needs --batch-size")
        outs = (iter(template_names(args.output_template)) if args.output_template
                else iter([args.output]))
        cuts = read_cuts(args.cuts, args.sample_rate)
        size = args.batch_size if args.output_template else None
        batches = n_cuts = 0
        while True:
            batch = []
            for entry in cuts:
                batch.append(entry)
                if size is not None and len(batch) == size:
                    break
            if not batch:
                break
            out = next(outs, None)
            if out is None:
                raise GetError(f"--output-template {args.output_template} has no name left "
                               f"for batch {batches + 1}")
            fmt = format_of(out)
            n, missing, nbytes = get_batch(args.url, batch, out, fmt, args.coer, args.bucket,
                                           token=args.token, onob=args.omit_src_bck)
            batches += 1
            n_cuts += len(batch)
            extra = f" ({missing} missing)" if missing else ""
            print(f"{out}: {n} entries{extra}, {human(nbytes)}", file=sys.stderr)
            if size is None:
                break
    except (GetError, SpecError) as exc:
        print(f"getbatch lhotse-get-batch: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    if not batches:
        print(f"getbatch lhotse-get-batch: no cuts in {args.cuts}", file=sys.stderr)
        return 1
    print(f"{batches} archive(s) from {n_cuts} cuts", file=sys.stderr)
    return 0
