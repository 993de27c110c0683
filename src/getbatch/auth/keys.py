"""The node's token signing key, from the settings `auth_key` or `auth_key_file`.

The server and `getbatch token issue` read it the same way, so a token issued with a node's
configuration is accepted by that node. Problems are a one-line ConfigError, before any
worker starts.
"""
from ..config import ConfigError

# RFC 7518 3.2: an HS256 key must be at least as long as the hash (256 bits)
MIN_KEY_BYTES = 32
_HINT = "e.g. the output of `openssl rand -hex 32`"


def signing_key(config):
    """The key as bytes; ConfigError when none is set, both are set, or it is unusable."""
    if config.auth_key and config.auth_key_file:
        raise ConfigError("set one of auth_key and auth_key_file, not both "
                          f"(auth_key from {config.origin('auth_key')}, auth_key_file from "
                          f"{config.origin('auth_key_file')})")
    if config.auth_key_file:
        path = config.auth_key_file
        try:
            with open(path, "rb") as f:
                key = f.read().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read auth_key_file {path}: {exc.strerror}") from None
        where = f"auth_key_file {path}"
    elif config.auth_key:
        key = config.auth_key.encode("utf-8")
        where = f"auth_key ({config.origin('auth_key')})"
    else:
        raise ConfigError("no token signing key: set auth_key_file (a file holding the key) or "
                          f"GETBATCH_AUTH_KEY, {_HINT}")
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"the token signing key in {where} is {len(key)} bytes; it must be at "
                          f"least {MIN_KEY_BYTES}, {_HINT}")
    return key
