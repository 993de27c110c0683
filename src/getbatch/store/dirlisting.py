"""Non-recursive listings (the SDK's `NO_RECURSION` flag), over any backend.

Only the objects right under the prefix are listed; each deeper level shows once as a
virtual directory entry `<prefix><dir>/` (AIS's EntryIsDir flag), unless `NO_DIRS` asks to
leave them out. Names sort as in a full listing. The continuation token is the last entry's
name; a directory entry ends in `/`, which no object name does, so the next page resumes
after everything below it. The backend is driven by `start_after` only.
"""
from .attrs import ObjectAttrs
from .paging import page_limit

IS_DIR = 1 << 8       # LsoEntry flag of AIS (api/apc/lsmsg.go)
_PAST = "\U0010ffff"  # sorts after every name below a directory


def list_level(backend, bucket, prefix="", page_size=0, token="", start_after="",
               with_meta=False, dirs=True):
    """One page: ([(ObjectAttrs, flags)], next_token); next_token "" on the last page."""
    limit = page_limit(page_size)
    out = []
    after = _resume(max(token, start_after))
    while True:
        attrs, nxt = backend.list_objects(bucket, prefix=prefix, page_size=limit - len(out),
                                          start_after=after, with_meta=with_meta)
        for a in attrs:
            if a.name <= after:
                continue  # below a directory already listed
            cut = a.name.find("/", len(prefix))
            if cut < 0:
                out.append((a, 0))
                after = a.name
            else:
                d = a.name[:cut + 1]
                if dirs:
                    out.append((ObjectAttrs(0, 0, 0, name=d, bucket=bucket), IS_DIR))
                after = d + _PAST
            if len(out) == limit:
                return out, _token(after)
        if not nxt:
            return out, ""


def _resume(token):
    return token + _PAST if token.endswith("/") else token


def _token(after):
    return after[:-1] if after.endswith(_PAST) else after
