"""Credentials kept out of what operators and clients see: config output, errors, logs.

A URL may carry `user:password@` (an ht:// origin behind basic auth, an S3 endpoint); every
text that shows such a URL goes through `redact` first, which keeps the user name (it helps
tell two origins apart) and replaces the password.
"""
import re

# scheme://user:password@ -- the password ends at the last "@" before the host part
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:@/\s]*):[^/\s]*@")


def redact(text):
    """`text` with the password of every `scheme://user:password@host` URL replaced by ***."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
