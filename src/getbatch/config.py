"""One typed configuration for a node, built once and passed down.

Every setting is declared once in `SETTINGS` (name, type, default, help). A `Config` is
built from, in increasing precedence: the defaults, a TOML file (`--config FILE`, flat
`key = value` lines), the environment (`GETBATCH_<KEY>`), and command-line flags. Each value
is validated when it is read; a bad one raises `ConfigError` with a one-line message naming
the key, the value and where it came from. `Config.origin(key)` says where a value came
from (`getbatch config show` prints both).

`GETBATCH_PURE` is the one setting read at import (by `getbatch.archive`, as msgpack reads
`MSGPACK_PUREPYTHON`): it picks the implementation of the library itself, before any
configuration exists. It is listed here so that `config show` reports it.
"""
import math
import os
import re
from decimal import Decimal
from dataclasses import dataclass

from .redact import redact

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ENV_PREFIX = "GETBATCH_"


class ConfigError(ValueError):
    """A setting has a bad value, or the config file cannot be used. The message is one line."""


_SIZE_RE = re.compile(r"\s*(\d+)\s*([kmgt]i?b?|b)?\s*", re.I)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_DURATION_RE = re.compile(r"\s*(\d+(?:\.\d*)?)\s*(ms|s|m|h)?\s*", re.I)
_DURATION_UNITS = {"": 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "h": 3600.0}


def _as_int(v):
    if isinstance(v, bool):
        raise ValueError("expecting an integer")
    if isinstance(v, int):
        return v
    if isinstance(v, str) and re.fullmatch(r"\s*[+-]?\d+\s*", v):
        return int(v)
    raise ValueError("expecting an integer")


def as_size(v):
    """Bytes: an integer, or text such as 64MiB, 64M, 1g, 4096."""
    if isinstance(v, str):
        m = _SIZE_RE.fullmatch(v)
        if not m:
            raise ValueError("expecting a size in bytes such as 4096, 64MiB or 1GiB")
        return int(m.group(1)) * _SIZE_UNITS[(m.group(2) or "")[:1].lower()]
    return _as_int(v)


def as_duration(v):
    """Seconds: a number, or text such as 500ms, 20s, 5m."""
    if isinstance(v, bool):
        raise ValueError("expecting a duration such as 20, 20s, 500ms or 5m")
    try:
        if isinstance(v, (int, float)):
            seconds = float(v)
        elif isinstance(v, str) and (m := _DURATION_RE.fullmatch(v)):
            seconds = float(m.group(1)) * _DURATION_UNITS[(m.group(2) or "").lower()]
        else:
            seconds = math.nan
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds):
        raise ValueError("expecting a duration such as 20, 20s, 500ms or 5m")
    return seconds


TRUE_WORDS = ("1", "true", "yes", "on")


def _as_bool(v):
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in TRUE_WORDS:
        return True
    if isinstance(v, str) and v.strip().lower() in ("0", "false", "no", "off", ""):
        return False
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    raise ValueError("expecting true or false")


def _as_str(v):
    if not isinstance(v, str):
        raise ValueError("expecting a string")
    return v


def _as_optional(v):
    """A string that may be unset: "" (written "" or "none")."""
    v = _as_str(v)
    return "" if v.strip().lower() == "none" else v


def _as_url(v):
    """A URL, or "" for none (written "" or "none")."""
    url = _as_optional(v).strip().rstrip("/")
    if url and not re.fullmatch(r"https?://[^/\s]+", url):
        raise ValueError("expecting a URL such as http://10.0.0.5:51080 (scheme, host and port)")
    return url


def _as_url_list(v):
    """Comma-separated URLs (a TOML list too); a tuple, empty for none."""
    items = v if isinstance(v, (list, tuple)) else _as_str(v).split(",")
    return tuple(u for u in (_as_url(x) for x in items) if u)


def _as_origins(v):
    """`name=http(s)://host/path` pairs, comma-separated (store/http.py reads them)."""
    text = _as_optional(v)
    for pair in filter(None, (p.strip() for p in text.split(","))):
        name, sep, url = pair.partition("=")
        if not sep or not name.strip() or not url.strip().startswith(("http://", "https://")):
            raise ValueError(f"bad entry {pair!r}: expecting name=http(s)://host/path")
    return text


def _as_peer_compression(v):
    mode = _as_str(v).strip().lower()
    if mode not in ("never", "lz4", "snappy", "auto"):
        raise ValueError("expecting never, lz4, snappy or auto")
    return mode


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _as_log_level(v):
    level = _as_str(v).strip().upper()
    if level not in _LOG_LEVELS:
        raise ValueError(f"expecting one of {', '.join(_LOG_LEVELS)}")
    return level


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Setting:
    name: str
    parse: object      # text or TOML value -> typed value; raises ValueError
    default: object    # a typed value, or a callable computing one from the machine
    help: str
    low: object = None   # inclusive bounds, where they apply
    high: object = None
    runtime: bool = False  # may change on a running node (getbatch config set; runtime.py)

    @property
    def env(self):
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self):
        return "--" + self.name.replace("_", "-")

    def check(self, value):
        value = self.parse(value)
        if self.low is not None and value < self.low:
            raise ValueError(f"must be at least {self.low}")
        if self.high is not None and value > self.high:
            raise ValueError(f"must be at most {self.high}")
        return value


def default_workers():
    """One process (one GIL) per core, and two at least, so one busy process never holds up
    the node."""
    return max(2, _cores())


# Every setting, in the order `config show` prints them. Defaults are documented here only.
SETTINGS = (
    # -- the node
    Setting("host", _as_str, "127.0.0.1", "address to listen on"),
    Setting("port", _as_int, 51080, "TCP port to listen on", 1, 65535),
    Setting("data_dir", _as_str, "data", "directory holding buckets, objects and the node's caches"),
    Setting("workers", _as_int, default_workers,
            "server processes (default: one per core, at least 2)", 1, 256),
    # 2: on 2 cores (bench/RESULTS.md, "Concurrent small batches"), 4 and 8 threads per
    # process fell now and then into runs with half the throughput and half a core idle on a
    # quiet machine; 2 never did and had the best median; under load all were equal. A single
    # batch runs in one thread whatever the count.
    Setting("threads", _as_int, 2, "request threads per process", 1, 1024),
    Setting("node_id", _as_str, "t[getbatch]", "this node's id in cluster maps and error bodies"),
    Setting("log_level", _as_log_level, "INFO", "DEBUG, INFO, WARNING or ERROR"),
    Setting("access_log", _as_bool, False, "log one line per HTTP request"),
    # -- the cluster (none configured: a single node)
    Setting("etcd", _as_url_list, (),
            "etcd endpoints (comma-separated URLs) of the cluster to join; none: a single node"),
    Setting("advertise", _as_url, "",
            "URL peers and clients reach this node at (default http(s)://HOST:PORT)"),
    # -- GetBatch
    Setting("max_soft_errs", _as_int, 8,
            "missing items a `coer` request may turn into placeholders (AIS default 8)", 0,
            runtime=True),
    Setting("max_wait", as_duration, 20.0,
            "on a cluster, how long a batch waits for an item from a peer; unused on one node", 0.0,
            runtime=True),
    # AIS's meaning of every value (-1 off, 0 min(5, max_soft_errs)), so a setting copied
    # from AIS does what it did there. Not AIS's default: with copies, a node found dead
    # before its lease expires hands its whole share to neighbours, and 5 would fail the
    # batch (docs/configuration.md, "Get from neighbour").
    Setting("max_gfn", _as_int, 100_000,
            "on a cluster, entries a batch may read from a node other than their first owner "
            "(get from neighbour); -1: none, 0: AIS's default min(5, max_soft_errs)", -1,
            runtime=True),
    Setting("peer_compression", _as_peer_compression, "never",
            "on a cluster, how owners send their items to the DT: never, lz4, snappy, or auto "
            "(lz4 where the link is slow enough for it to pay)", runtime=True),
    Setting("peer_link_mbit", _as_int, 1000,
            "the speed of the links between nodes, Mbit/s, that peer_compression=auto weighs "
            "compression against", 1, runtime=True),
    Setting("max_entries", _as_int, 100_000, "entries one GetBatch request may name", 1,
            runtime=True),
    Setting("max_body", as_size, 64 << 20,
            "bytes of a request body read into memory (GetBatch, bucket actions); more is a 413", 1024),
    Setting("window", as_size, 32 << 20,
            "bytes of decompressed members a batch holds in memory at once", 1 << 20,
            runtime=True),
    Setting("max_inflate", as_size, 4 << 30,
            "bytes one request may decompress from compressed shards (0: no limit)", 0,
            runtime=True),
    # -- multi-object jobs: delete, evict, prefetch by list, template or prefix (docs/jobs.md)
    Setting("max_template", _as_int, 1_000_000,
            "object names one template of a multi-object job may expand to; more is a 400", 1),
    Setting("max_bucket_jobs", _as_int, 4,
            "multi-object jobs running at once on one bucket, per node; more get 429", 1),
    Setting("job_rate", _as_int, 2000,
            "objects per second one multi-object job handles at most (0: no limit)", 0),
    # -- admission control and warm-up (server/admit.py, batch/warmup.py)
    Setting("max_batches", _as_int, 32,
            "GetBatch requests a node runs at once (all its processes); more get 429 "
            "(0: no limit)", 0, runtime=True),
    Setting("batch_memory", as_size, 2 << 30,
            "memory the node's running batches may reserve together, each its window + 4MiB; "
            "more get 429 (0: no limit)", 0, runtime=True),
    Setting("min_free_memory", as_size, 256 << 20,
            "a new GetBatch gets 429 while the machine has less memory available (0: no check)",
            0, runtime=True),
    Setting("min_free_disk", as_size, 512 << 20,
            "a new GetBatch gets 429 while the data directory's disk has less free space "
            "(0: no check)", 0, runtime=True),
    Setting("max_waiting", _as_int, 64,
            "GetBatch requests that may wait for a running one to end, beyond max_batches or "
            "batch_memory; more get 429 (0: none wait)", 0, runtime=True),
    Setting("admit_wait", as_duration, 1.0,
            "how long a GetBatch may wait for a running one to end before it gets 429 "
            "(0: none wait)", 0.0, 60.0, runtime=True),
    # 1, not AIS's -1 (off): on a cold page cache it sped up batches of small and medium
    # files 1.7-3x and cost nothing measurable on a warm one (bench/RESULTS.md, "Warm-up")
    Setting("warmup_workers", _as_int, 1,
            "threads per process asking the kernel to read a batch's next files ahead "
            "(-1 or 0: off)", -1, 16, runtime=True),
    Setting("inflate_cache", as_size, 8 << 30,
            "disk budget for decompressed copies of compressed shards (0: none)", 0),
    Setting("index_memory", as_size, 64 << 20,
            "memory each server process keeps parsed shard indexes and ZIP directories in "
            "(LRU by bytes; 0: none kept)", 0),
    # -- the wire
    Setting("send_timeout", as_duration, 120.0,
            "seconds a client may accept no response data before its request is aborted", 0.1),
    Setting("header_timeout", as_duration, 10.0,
            "seconds a new connection may take to send its first request head", 0.1),
    Setting("body_timeout", as_duration, 30.0,
            "seconds a request body may stall (no byte arriving) before the request is dropped", 0.1),
    Setting("keepalive", as_duration, 75.0,
            "seconds an idle keep-alive connection stays open", 0.0),
    Setting("max_connections", _as_int, 4096,
            "open client connections per server process; more wait in the listen queue", 1),
    Setting("max_client_connections", _as_int, 512,
            "open connections per client address per process; more are refused", 1),
    Setting("sendfile_min", as_size, 1 << 20,
            "items of this size and more go to remote clients with sendfile(2)", 0),
    Setting("sendfile_loopback", _as_bool, False,
            "use sendfile for loopback clients too (copies measured faster there)"),
    # -- remote buckets (aws/s3, ht)
    Setting("s3_endpoint", _as_url, "",
            "S3-compatible endpoint URL for aws:// buckets (empty: the boto3 chain, e.g. "
            "AWS_ENDPOINT_URL, else AWS S3)"),
    Setting("s3_region", _as_optional, "", "S3 region (empty: the boto3 chain, e.g. AWS_DEFAULT_REGION)"),
    Setting("s3_path_style", _as_bool, False,
            "path-style S3 URLs (MinIO, Ceph RGW behind a plain host name)"),
    Setting("ht_origins", _as_origins, "",
            "ht:// buckets: comma-separated name=URL pairs, e.g. data=https://host/datasets/"),
    Setting("ht_redirects", _as_int, 0,
            "redirects an ht:// origin may send a request through (0: none; never to a "
            "loopback, link-local or private address unless the origin is one)", 0, 10),
    Setting("remote_cache", as_size, 8 << 30,
            "disk budget for cached copies of remote objects (0: none; LRU)", 0),
    Setting("remote_inflight", _as_int, 16,
            "remote objects and shards one process fetches at once for GetBatch", 1, 256),
    # -- authentication (docs/auth.md)
    Setting("auth", _as_bool, False,
            "require a signed bearer token on every request but /v1/health"),
    Setting("auth_key", _as_optional, "",
            "token signing key (secret; prefer auth_key_file or the environment to a flag)"),
    Setting("auth_key_file", _as_optional, "", "file holding the token signing key"),
    Setting("auth_leeway", as_duration, 30.0,
            "seconds a token's exp and nbf may be off, for clocks that differ", 0.0, 300.0),
    # -- TLS (docs/deploy.md): the node's listener, its peers, etcd
    Setting("tls_cert", _as_optional, "",
            "PEM certificate (chain) the node serves HTTPS with, and presents to its peers"),
    Setting("tls_key", _as_optional, "", "PEM private key of tls_cert"),
    Setting("tls_ca", _as_optional, "",
            "PEM CA bundle peers' certificates are checked against (and clients' with "
            "tls_client_auth); peer requests then need a client certificate it signed"),
    Setting("tls_client_auth", _as_bool, False,
            "require a client certificate signed by tls_ca on every connection (mutual TLS)"),
    Setting("etcd_ca", _as_optional, "", "PEM CA bundle the etcd servers' certificates are checked against"),
    Setting("etcd_cert", _as_optional, "", "PEM client certificate presented to etcd"),
    Setting("etcd_key", _as_optional, "", "PEM private key of etcd_cert"),
    Setting("pure", _as_bool, False,
            "use the pure-Python twins instead of the Cython extensions (environment only)"),
)

_BY_NAME = {s.name: s for s in SETTINGS}
_ENV_ONLY = {"pure"}


def check_setting(name, value):
    """`value` (text or a number) as setting `name` takes it, within the setting's bounds;
    ValueError saying why not. A request parameter that overrides a setting (?max_wait=) is
    checked by this, so the two cannot accept different values."""
    return _BY_NAME[name].check(value)


class Config:
    """Effective settings: attributes named as in SETTINGS, plus `origin(name)`."""

    def __init__(self, values=None, origins=None):
        values = dict(values or {})
        unknown = set(values) - set(_BY_NAME)
        if unknown:
            raise ConfigError(f"unknown setting {sorted(unknown)[0]!r}")
        object.__setattr__(self, "_origins", dict(origins or {}))
        for s in SETTINGS:
            if s.name in values:
                try:
                    v = s.check(values[s.name])
                except ValueError as exc:
                    raise ConfigError(redact(f"invalid {s.name} {values[s.name]!r}: {exc}")) from None
            else:
                v = s.default() if callable(s.default) else s.default
                self._origins.setdefault(s.name, "default")
            object.__setattr__(self, s.name, v)

    def __setattr__(self, name, value):
        raise AttributeError("Config is read-only; use replace()")

    def origin(self, name):
        return self._origins.get(name, "default")

    def replace(self, **changes):
        """A copy with `changes` applied (validated), e.g. for tests."""
        values = {s.name: getattr(self, s.name) for s in SETTINGS}
        origins = dict(self._origins)
        for k, v in changes.items():
            if k not in _BY_NAME:
                raise ConfigError(f"unknown setting {k!r}")
            values[k] = v
            origins[k] = "replace"
        return Config(values, origins)

    @property
    def gfn_limit(self):
        """Entries a batch may read from neighbours, as AIS reads `max_gfn`: -1 none,
        0 min(5, max_soft_errs), else the number."""
        if self.max_gfn < 0:
            return 0
        return self.max_gfn or min(5, self.max_soft_errs)

    def current(self):
        """The settings in force now: this Config (a runtime.LiveConfig answers its latest)."""
        return self

    def overlay(self, values, origins):
        """A copy with `values` ({name: value}, validated) applied, from `origins`
        ({name: text}): runtime overrides (runtime.py)."""
        merged = dict(self.as_dict(), **values)
        return Config(merged, dict(self._origins, **origins))

    def as_dict(self):
        return {s.name: getattr(self, s.name) for s in SETTINGS}

    @classmethod
    def load(cls, file=None, env=None, flags=None):
        """Defaults < `file` (TOML) < `env` (default: os.environ) < `flags` ({name: value}
        for the flags given on the command line). Raises ConfigError."""
        env = os.environ if env is None else env
        values, origins = {}, {}

        def take(name, raw, where):
            s = _BY_NAME[name]
            try:
                values[name] = s.check(raw)
            except ValueError as exc:
                raise ConfigError(redact(f"invalid {name} {raw!r} ({where}): {exc}")) from None
            origins[name] = where

        if file is not None:
            for name, raw in _read_toml(file).items():
                if name not in _BY_NAME or name in _ENV_ONLY:
                    raise ConfigError(f"unknown setting {name!r} in {file} "
                                      f"(known: {', '.join(s.name for s in SETTINGS if s.name not in _ENV_ONLY)})")
                take(name, raw, f"file {file}")
        for s in SETTINGS:
            if s.env in env:
                take(s.name, env[s.env], f"env {s.env}")
        for name, raw in (flags or {}).items():
            if raw is not None:
                take(name, raw, f"flag {_BY_NAME[name].flag}")
        return cls(values, origins)


def _read_toml(file):
    try:
        with open(file, "rb") as f:
            doc = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {file} is not valid TOML: {exc}") from None
    for k, v in doc.items():
        if isinstance(v, dict):
            raise ConfigError(f"config file {file}: [{k}] tables are not used; "
                              "write settings as top-level key = value lines")
    return doc


def describe():
    """(name, env var, default text, help) of every setting, for docs and --help."""
    out = []
    for s in SETTINGS:
        d = s.default() if callable(s.default) else s.default
        out.append((s.name, s.env, format_value(s.name, d), s.help))
    return out


_SIZE_KEYS = {s.name for s in SETTINGS if s.parse is as_size}
_DURATION_KEYS = {s.name for s in SETTINGS if s.parse is as_duration}


_SECRET_KEYS = {"auth_key"}


def _decimal_text(number):
    """`number` in plain decimal digits, as short as round-trips (never 1e+06: the duration
    parser reads digits and a point only)."""
    text = format(Decimal(repr(float(number))), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_value(name, value):
    """A value as an operator would write it back (sizes in KiB/MiB/GiB, durations in s);
    secrets are only said to be set, and passwords in URLs are replaced by ***."""
    if name in _SECRET_KEYS:
        return "(set)" if value else "none"
    if isinstance(value, str) and value:
        return redact(value)
    if name in _SIZE_KEYS:
        for unit, mult in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
            if value and value % mult == 0:
                return f"{value // mult}{unit}"
        return str(value)
    if name in _DURATION_KEYS:
        return _decimal_text(value) + "s"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value in ("", ()):
        return "none"
    if isinstance(value, tuple):
        return redact(",".join(value))
    return str(value)
