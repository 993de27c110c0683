"""`getbatch token issue`: print a signed token, with the signing key of the node's own
configuration (the same --config file, GETBATCH_* environment and flags as `serve`)."""
import sys
import time

from ..config import SETTINGS, ConfigError, as_duration
from .keys import signing_key

DEFAULT_TTL = "24h"


_KEY_SETTINGS = ("auth_key", "auth_key_file")


def add_parser(sub):
    """Add `token issue` to the subcommands `sub`. Of the node's flags it takes those that
    find the key; the others keep their file and environment values."""
    t = sub.add_parser("token", help="issue bearer tokens for a node with auth on",
                       description="Bearer tokens (docs/auth.md).")
    tsub = t.add_subparsers(dest="token_cmd", required=True, metavar="ACTION")
    i = tsub.add_parser(
        "issue", help="print a signed token for a user",
        description="Print a token signed with the node's key (auth_key or auth_key_file, from "
                    "the same --config file, environment and flags as `serve`). Give it to the "
                    "client as Client(url, token=...) or AIS_AUTHN_TOKEN.")
    i.add_argument("--user", required=True, help="who the token is for (its subject)")
    i.add_argument("--bucket", action="append", default=[], metavar="NAME:PERMS",
                   help="a permission, repeatable: NAME is a bucket (ais), PROVIDER://NAME, "
                        "PROVIDER://* or * (every bucket); PERMS are letters of r (read), "
                        "w (write), a (admin: create/destroy buckets), e.g. images:rw, *:r")
    i.add_argument("--ttl", default=DEFAULT_TTL,
                   help=f"lifetime such as 1h, 30m, 3600 (default {DEFAULT_TTL})")
    i.add_argument("--config", metavar="FILE", default=None,
                   help="the node's TOML file of settings (for auth_key or auth_key_file)")
    for s in SETTINGS:
        if s.name in _KEY_SETTINGS:
            i.add_argument(s.flag, dest=s.name, default=None, metavar=s.name.upper(),
                           help=f"{s.help} (env {s.env})")
    i.set_defaults(**{s.name: None for s in SETTINGS if s.name not in _KEY_SETTINGS})


def run(args, config):
    """Print the token on stdout and what it grants on stderr; ConfigError on bad input."""
    # here, not at the top: the token module imports the store, which `getbatch --help` and
    # `serve` argument parsing do not need
    from .tokens import issue, parse_bucket_spec
    try:
        ttl = as_duration(args.ttl)
        perms = {}
        for spec in args.bucket:
            scope, letters = parse_bucket_spec(spec)
            perms[scope] = "".join(sorted(set(perms.get(scope, "") + letters), key="rwa".index))
        token = issue(signing_key(config), args.user, perms, ttl)
    except ValueError as exc:  # ConfigError included
        raise ConfigError(str(exc)) from None
    print(token)
    grants = ", ".join(f"{s}:{p}" for s, p in perms.items()) or "no bucket permissions"
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + ttl))
    print(f"token for {args.user!r} until {until}: {grants}", file=sys.stderr)
