"""What `ais ml get-batch` and `ais ml lhotse-get-batch` read, for `getbatch get` and
`getbatch lhotse-get-batch`: a spec file (a MossReq in JSON or YAML) and Lhotse cut manifests.

A spec holds `in` (entries: objname, and optionally bucket, provider, archpath, start, length;
an entry without a bucket is of the command's `--bucket`) and may set the output format and
flags under AIS's JSON names (`mime`, `coer`, `onob`, `strm`) or the long names AIS's CLI
examples use (`output_format`, `continue_on_err`, `only_obj_name`, `streaming_get`); flags on
the command line win, as in AIS.

A cut manifest is Lhotse's `cuts.jsonl` (also `.jsonl.gz`, `.jsonl.lz4`): one cut a line, its
audio at `recording.sources[0].source`, else `recording.path`, else `audio_source`, a URI such
as `s3://bucket/dir/a.wav`, `ais://bucket/shard.tar/a.wav` or `bucket/a.wav` (ais). With a
sample rate, a cut becomes the byte range `start * rate` for `duration * rate` bytes of its
recording, as AIS reads it (one byte per sample: pass bytes per second for wider samples);
AIS truncates `start` and `duration` to whole seconds first, getbatch does not.
"""
import gzip
import io
import json
import os

from .archive.formats import format_from_name
from .jobs.template import Template, TemplateError

SPEC_FLAGS = {"mime": "mime", "output_format": "mime", "coer": "coer", "continue_on_err": "coer",
              "onob": "onob", "only_obj_name": "onob", "strm": "strm", "streaming_get": "strm"}
ENTRY_KEYS = ("objname", "bucket", "provider", "archpath", "start", "length", "opaque")
# URI schemes as AIS's CLI writes them, and the provider each names
SCHEMES = {"ais": "ais", "s3": "aws", "aws": "aws", "gs": "gcp", "gcp": "gcp", "az": "azure",
           "azure": "azure", "oci": "oci", "ht": "ht"}
SAMPLE_RATES = (1000, 384000)   # Hz, the range AIS accepts


class SpecError(ValueError):
    """A spec, template or manifest that cannot be used; one line naming where."""


def load_spec(path):
    """(entries, flags) of the spec file at `path`: JSON, or YAML for .yaml/.yml."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise SpecError(f"cannot read spec {path}: {exc.strerror}") from None
    if path.lower().endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError:
            raise SpecError(f"spec {path} is YAML: reading it needs PyYAML "
                            "(pip install PyYAML), or write it as JSON") from None
        try:
            doc = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise SpecError(f"spec {path} is not valid YAML: {exc}") from None
    else:
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise SpecError(f"spec {path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("in"), list):
        raise SpecError(f'spec {path}: expecting an object with "in", a list of entries')
    entries = []
    for i, e in enumerate(doc["in"]):
        if not isinstance(e, dict) or not isinstance(e.get("objname"), str) or not e["objname"]:
            raise SpecError(f'spec {path}: entry {i} has no "objname"')
        unknown = set(e) - set(ENTRY_KEYS)
        if unknown:
            raise SpecError(f"spec {path}: entry {i} has unknown field(s) "
                            f"{', '.join(sorted(unknown))} (known: {', '.join(ENTRY_KEYS)})")
        entries.append({k: v for k, v in e.items() if v not in (None, "")})
    flags = {SPEC_FLAGS[k]: v for k, v in doc.items() if k in SPEC_FLAGS}
    return entries, flags


def template_names(text):
    """The names an AIS range template expands to (a template must have a range here)."""
    try:
        t = Template(text, 1_000_000, "")
    except TemplateError as exc:
        raise SpecError(str(exc)) from None
    if t.is_prefix:
        raise SpecError(f'template "{text}" has no range such as {{000..999}}')
    return list(t)


def split_archpath(name):
    """(object, archpath) for a name that runs through a shard (`shard.tar/a.wav`), else
    (name, "")."""
    parts = name.split("/")
    for i in range(1, len(parts)):
        if format_from_name(parts[i - 1]) is not None:
            return "/".join(parts[:i]), "/".join(parts[i:])
    return name, ""


def uri_entry(uri):
    """The MossIn entry of a source URI: `s3://b/o`, `ais://b/shard.tar/a.wav`, `b/o`."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        scheme, rest = "ais", uri
    provider = SCHEMES.get(scheme.lower())
    bucket, _, obj = rest.partition("/")
    if provider is None or not bucket or not obj:
        raise SpecError(f"cannot read {uri!r} as BUCKET/OBJECT or PROVIDER://BUCKET/OBJECT")
    obj, archpath = split_archpath(obj)
    entry = {"objname": obj, "bucket": bucket, "provider": provider}
    if archpath:
        entry["archpath"] = archpath
    return entry


def _open_text(path):
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise SpecError(f"cannot read cuts {path}: {exc.strerror}") from None
    head = f.read(4)
    f.seek(0)
    if path.endswith((".gz", ".gzip")) or head[:2] == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.GzipFile(fileobj=f), encoding="utf-8")
    if path.endswith(".lz4") or head == b"\x04\x22\x4d\x18":
        import lz4.frame
        return io.TextIOWrapper(lz4.frame.LZ4FrameFile(f), encoding="utf-8")
    return io.TextIOWrapper(f, encoding="utf-8")


def _source(cut, where):
    rec = cut.get("recording") or {}
    sources = rec.get("sources") or []
    if sources and isinstance(sources[0], dict) and sources[0].get("source"):
        return sources[0]["source"]
    if rec.get("path"):
        return rec["path"]
    if cut.get("audio_source"):
        return cut["audio_source"]
    raise SpecError(f"{where}: cut {cut.get('id', '?')!r} names no audio source")


def read_cuts(path, sample_rate=None):
    """The entries of a Lhotse cut manifest, one per cut, lazily, in manifest order."""
    if sample_rate is not None and not SAMPLE_RATES[0] <= sample_rate <= SAMPLE_RATES[1]:
        raise SpecError(f"sample rate {sample_rate} Hz is outside [{SAMPLE_RATES[0]}, "
                        f"{SAMPLE_RATES[1]}]")
    try:
        with _open_text(path) as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{os.path.basename(path)} line {n}"
                try:
                    cut = json.loads(line)
                except ValueError as exc:
                    raise SpecError(f"{where}: not a JSON cut ({exc})") from None
                if not isinstance(cut, dict):
                    raise SpecError(f"{where}: not a JSON cut")
                entry = uri_entry(_source(cut, where))
                if sample_rate is not None:
                    try:
                        start, duration = float(cut.get("start", 0)), float(cut["duration"])
                    except (KeyError, TypeError, ValueError):
                        raise SpecError(f"{where}: cut needs numeric start and duration") from None
                    entry["start"] = round(start * sample_rate)
                    entry["length"] = round(duration * sample_rate)
                yield entry
    except (OSError, EOFError, RuntimeError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read cuts {path}: {exc}") from None


def format_of(path):
    """The output format an archive's name asks for (tar when its extension names none)."""
    return format_from_name(path) or "tar"
