"""Runtime configuration: settings changed on a running node, without a restart.

Only settings marked `runtime` in config.SETTINGS may change (the GetBatch knobs and the
admission budgets); the others need a restart. A change is validated by the same parsers as
the file, environment and flags, then stored where every worker process sees it:
- one node: `<data_dir>/.sys/runtime-config.json`, replaced atomically; each process checks
  its mtime (one stat) when it takes the current settings, and re-reads it when it changed;
- a cluster: the etcd key `getbatch/config`, which every worker of every node watches
  (cluster/runtimeconf.py).
Overrides persist (as AIS cluster config does) and win over file, environment and flags until
reset; `getbatch config show --url` lists them with when they were set.

The stored document: {"values": {name: text}, "set": {name: "<UTC time> by <client>"}}, the
text written back as an operator would write it (config.format_value), so it re-parses.
"""
import fcntl
import json
import logging
import os
import threading
import time

from .config import SETTINGS, format_value

log = logging.getLogger("getbatch.config")

FILE_NAME = "runtime-config.json"
SETTLE_WAIT = 2.0             # seconds a change waits to be seen by its own process
AIS_PREFIX = "get_batch."     # `ais config cluster get_batch.max_soft_errs=10` names keys so

_BY_NAME = {s.name: s for s in SETTINGS}
RUNTIME_KEYS = tuple(s.name for s in SETTINGS if s.runtime)


class RuntimeConfigError(ValueError):
    """A change that cannot be made; the message is one line for the operator (a 400)."""


def check_changes(raw):
    """{name: typed value} of `raw` ({name: text or JSON value}); RuntimeConfigError naming
    the first bad key or value."""
    if not raw:
        raise RuntimeConfigError("nothing to set: expecting KEY=VALUE (runtime settings: "
                                 f"{', '.join(RUNTIME_KEYS)})")
    out = {}
    for key, value in raw.items():
        name = key[len(AIS_PREFIX):] if key.startswith(AIS_PREFIX) else key
        s = _BY_NAME.get(name)
        if s is None or name == "pure":
            raise RuntimeConfigError(f"unknown setting {key!r} (runtime settings: "
                                     f"{', '.join(RUNTIME_KEYS)})")
        if not s.runtime:
            raise RuntimeConfigError(f"{name} cannot change at run time: it needs a restart "
                                     "(set it in the config file, environment or flags)")
        try:
            typed = s.check(value)
            # validated in the form it is stored in, which every process parses again:
            # what cannot come back the same is refused now, not ignored later
            stored = format_value(name, typed)
            if s.check(stored) != typed:
                raise ValueError(f"it would be stored as {stored!r}, which reads back as "
                                 f"{s.check(stored)!r}")
        except ValueError as exc:
            raise RuntimeConfigError(f"invalid {name} {value!r}: {exc}") from None
        out[name] = typed
    return out


def check_names(names):
    """The runtime setting names of `names` (for a reset); RuntimeConfigError otherwise."""
    out = []
    for key in names:
        name = key[len(AIS_PREFIX):] if key.startswith(AIS_PREFIX) else key
        if name not in RUNTIME_KEYS:
            raise RuntimeConfigError(f"{key!r} is not a runtime setting (runtime settings: "
                                     f"{', '.join(RUNTIME_KEYS)})")
        out.append(name)
    return out


def _changed(doc, values, who):
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    doc = {"values": dict(doc.get("values", {})), "set": dict(doc.get("set", {}))}
    for name, v in values.items():
        doc["values"][name] = format_value(name, v)
        doc["set"][name] = f"{when} by {who}"
    return doc


def _reset(doc, names):
    doc = {"values": dict(doc.get("values", {})), "set": dict(doc.get("set", {}))}
    for name in names:
        doc["values"].pop(name, None)
        doc["set"].pop(name, None)
    return doc


class FileStore:
    """The overrides of one node, in `<data_dir>/.sys/runtime-config.json`."""

    def __init__(self, data_dir):
        self.dir = os.path.join(data_dir, ".sys")
        self.path = os.path.join(self.dir, FILE_NAME)

    def version(self):
        """Changes whenever the file is replaced (cheap: one stat)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def read(self):
        try:
            with open(self.path, "rb") as f:
                return json.loads(f.read() or b"{}")
        except FileNotFoundError:
            return {}
        except ValueError:
            log.warning("%s is not JSON: runtime overrides ignored until it is set again",
                        self.path)
            return {}

    def update(self, change):
        """Replace the document with `change(doc)`, serialized against other processes."""
        os.makedirs(self.dir, exist_ok=True)
        with open(self.path + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            doc = change(self.read())
            tmp = f"{self.path}.{os.getpid()}.{threading.get_ident()}"
            with open(tmp, "w") as f:
                json.dump(doc, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        return doc


class LiveConfig:
    """The node's settings as they are now: its start-up Config with the stored overrides.

    `current()` is what a request takes once and uses throughout (one stat, or a watched
    revision, per call; the Config is rebuilt only when the overrides changed). Attributes
    read through it answer from `current()` too."""

    def __init__(self, base, store):
        self.base = base
        self.store = store
        self._lock = threading.Lock()
        self._version = object()
        self._config = base
        self._doc = {}

    def current(self):
        v = self.store.version()
        if v != self._version:
            with self._lock:
                if v != self._version:
                    self._apply(self.store.read())
                    self._version = v
        return self._config

    def __getattr__(self, name):
        return getattr(self.current(), name)

    def _apply(self, doc):
        values, origins = {}, {}
        for name, text in (doc.get("values") or {}).items():
            s = _BY_NAME.get(name)
            try:
                if s is None or not s.runtime:
                    raise ValueError("not a runtime setting")
                values[name] = s.check(text)
            except ValueError as exc:  # stored by another version, or edited by hand
                log.warning("runtime override %s=%r ignored: %s", name, text, exc)
                continue
            origins[name] = f"runtime ({(doc.get('set') or {}).get(name, 'set')})"
        self._doc = doc
        self._config = self.base.overlay(values, origins)
        if values:
            log.info("runtime settings in force: %s",
                     ", ".join(f"{k}={format_value(k, v)}" for k, v in sorted(values.items())))

    def set(self, raw, who):
        """Validate and store `raw` ({name: value}); the typed values set."""
        values = check_changes(raw)
        self._settle(self.store.update(lambda doc: _changed(doc, values, who)))
        log.info("runtime config set by %s: %s", who,
                 ", ".join(f"{k}={format_value(k, v)}" for k, v in values.items()))
        return values

    def reset(self, names, who):
        """Drop the overrides of `names` (every one when empty); the names reset."""
        names = check_names(names) if names else list(RUNTIME_KEYS)
        self._settle(self.store.update(lambda doc: _reset(doc, names)))
        log.info("runtime config reset by %s: %s", who, ", ".join(names))
        return names

    def _settle(self, doc, wait=SETTLE_WAIT):
        """Wait (briefly) until this process sees `doc`, so the answer to a change shows it
        (a watched etcd key arrives a moment after the write)."""
        deadline = time.monotonic() + wait
        while self.store.read() != doc and time.monotonic() < deadline:
            time.sleep(0.01)

    def describe(self):
        """Every setting: value, origin, and whether it may change at run time (the API's
        answer to GET, what `config show --url` prints)."""
        cfg = self.current()
        return {s.name: {"value": format_value(s.name, getattr(cfg, s.name)),
                         "origin": cfg.origin(s.name), "runtime": s.runtime}
                for s in SETTINGS}
