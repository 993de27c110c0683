"""The configuration: precedence, validation with one-line messages, origins."""
import pytest

from getbatch.config import SETTINGS, Config, ConfigError, describe, format_value


def write(tmp_path, text):
    p = tmp_path / "node.toml"
    p.write_text(text)
    return str(p)


def test_defaults_are_documented_and_valid():
    c = Config()
    for name, env, default, help_ in describe():
        assert env == "GETBATCH_" + name.upper() and help_
        assert c.origin(name) == "default"
    assert (c.port, c.max_soft_errs, c.max_body, c.max_entries) == (51080, 8, 64 << 20, 100_000)
    assert c.workers >= 2 and c.threads >= 1


def test_precedence_file_env_flags(tmp_path):
    f = write(tmp_path, 'port = 1000\nthreads = 3\nmax_body = "1MiB"\nlog_level = "debug"\n')
    c = Config.load(file=f, env={"GETBATCH_PORT": "2000", "GETBATCH_THREADS": "5"},
                    flags={"port": "3000", "workers": None})
    assert (c.port, c.threads, c.max_body, c.log_level) == (3000, 5, 1 << 20, "DEBUG")
    assert c.origin("port") == "flag --port"
    assert c.origin("threads") == "env GETBATCH_THREADS"
    assert c.origin("max_body") == f"file {f}"
    assert c.origin("workers") == "default"


@pytest.mark.parametrize("text,value", [("64MiB", 64 << 20), ("64M", 64 << 20), ("1g", 1 << 30),
                                        ("4096", 4096), ("2 KiB", 2048), ("0", 0)])
def test_sizes(text, value):
    assert Config.load(env={"GETBATCH_MAX_INFLATE": text}).max_inflate == value


@pytest.mark.parametrize("text,value", [("20", 20.0), ("20s", 20.0), ("500ms", 0.5), ("2m", 120.0)])
def test_durations(text, value):
    assert Config.load(env={"GETBATCH_SEND_TIMEOUT": text}).send_timeout == value


@pytest.mark.parametrize("env,words", [
    ({"GETBATCH_PORT": "abc"}, ["port", "'abc'", "GETBATCH_PORT", "integer"]),
    ({"GETBATCH_PORT": "99999"}, ["port", "99999", "at most 65535"]),
    ({"GETBATCH_WORKERS": "0"}, ["workers", "at least 1"]),
    ({"GETBATCH_THREADS": "-1"}, ["threads", "at least 1"]),
    ({"GETBATCH_MAX_BODY": "lots"}, ["max_body", "size in bytes"]),
    ({"GETBATCH_ACCESS_LOG": "maybe"}, ["access_log", "true or false"]),
    ({"GETBATCH_LOG_LEVEL": "LOUD"}, ["log_level", "DEBUG"]),
    ({"GETBATCH_SEND_TIMEOUT": "soon"}, ["send_timeout", "duration"]),
])
def test_bad_values_are_one_line_naming_key_value_and_source(env, words):
    with pytest.raises(ConfigError) as ei:
        Config.load(env=env)
    msg = str(ei.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        Config.load(file=str(tmp_path / "missing.toml"), env={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        Config.load(file=write(tmp_path, "port = = 1"), env={})
    with pytest.raises(ConfigError, match="unknown setting 'prot'"):
        Config.load(file=write(tmp_path, "prot = 1"), env={})
    with pytest.raises(ConfigError, match="environment only|unknown setting 'pure'"):
        Config.load(file=write(tmp_path, "pure = true"), env={})
    with pytest.raises(ConfigError, match=r"invalid port 'x' \(file "):
        Config.load(file=write(tmp_path, 'port = "x"'), env={})
    with pytest.raises(ConfigError, match="tables are not used"):
        Config.load(file=write(tmp_path, "[server]\nport = 1"), env={})


def test_read_only_and_replace():
    c = Config()
    with pytest.raises(AttributeError):
        c.port = 1
    d = c.replace(port=1234)
    assert d.port == 1234 and c.port == 51080 and d.origin("port") == "replace"
    with pytest.raises(ConfigError):
        c.replace(nope=1)
    with pytest.raises(ValueError):
        c.replace(port=0)


@pytest.mark.parametrize("max_gfn, max_soft_errs, limit", [
    (-1, 8, 0), (0, 8, 5), (0, 3, 3), (0, 0, 0), (2, 8, 2), (12, 8, 12)])
def test_max_gfn_means_what_it_means_in_ais(max_gfn, max_soft_errs, limit):
    # -1 turns get from neighbour off, 0 is AIS's default min(5, max_soft_errs)
    c = Config(dict(max_gfn=max_gfn, max_soft_errs=max_soft_errs))
    assert c.gfn_limit == limit
    with pytest.raises(ConfigError, match="invalid max_gfn -2: must be at least -1"):
        Config(dict(max_gfn=-2))


def test_values_print_as_they_are_written():
    for s in SETTINGS:
        c = Config()
        text = format_value(s.name, getattr(c, s.name))
        assert Config.load(env={s.env: text}).as_dict()[s.name] == getattr(c, s.name)


@pytest.mark.parametrize("value", [1000000, 0.00001, 1e-7, 0.30000000000000004, 86400 * 365])
def test_a_runtime_value_is_applied_as_stored(tmp_path, value):
    """A change is stored as text that every process parses again: 1e+06s once was stored,
    failed to parse and was dropped with a warning, after the API had answered 200."""
    from getbatch.runtime import FileStore, LiveConfig
    live = LiveConfig(Config(), FileStore(str(tmp_path)))
    assert live.set({"max_wait": value}, "test") == {"max_wait": float(value)}
    fresh = LiveConfig(Config(), FileStore(str(tmp_path)))   # another worker process
    assert fresh.current().max_wait == float(value)
    assert fresh.current().origin("max_wait").startswith("runtime")


@pytest.mark.parametrize("value", [10**400, "1e+06s", float("nan"), "inf"])
def test_a_runtime_value_that_cannot_be_stored_is_a_400(tmp_path, value):
    from getbatch.runtime import RuntimeConfigError, check_changes
    with pytest.raises(RuntimeConfigError, match="invalid max_wait"):
        check_changes({"max_wait": value})
