"""What a remote store's answer must say before its bytes are believed (http.py, s3.py).

A 206 must carry a Content-Range naming exactly the range asked: an origin that answers
`Range: bytes=1000-1009` with bytes 0-9 would otherwise have them served as bytes 1000-1009.
Sizes must be whole numbers. Each check raises `BadReply` with the reason; the client turns it
into a RemoteBadAnswer (502) naming its endpoint.
"""
import re

_CONTENT_RANGE = re.compile(r"\s*bytes\s+(\d+)-(\d+)/(\d+)\s*", re.I)


class BadReply(ValueError):
    """The answer contradicts the request or is malformed; the text says how."""


def size_header(value, header="Content-Length"):
    """The non-negative integer of a size header (None when absent)."""
    if value is None:
        return None
    text = str(value).strip()
    if not text.isdigit() or not text.isascii():
        raise BadReply(f"{header}: {value!r} is not a size")
    return int(text)


def check_range(content_range, offset, length):
    """The object's total size from the Content-Range of a 206 that answered
    `Range: bytes=offset-(offset+length-1)`; BadReply unless it is exactly that range (cut at
    the object's end, as RFC 9110 allows)."""
    m = _CONTENT_RANGE.fullmatch(content_range or "")
    if m is None:
        raise BadReply(f"a 206 with Content-Range {content_range!r} (expecting bytes "
                       "first-last/size)")
    first, last, total = (int(g) for g in m.groups())
    want_last = min(offset + length, total) - 1
    if first != offset or last != want_last:
        raise BadReply(f"asked for bytes {offset}-{offset + length - 1}, got "
                       f"Content-Range {content_range.strip()!r}")
    return total


def check_body_length(content_length, offset, length, total):
    """A 206's Content-Length, when sent, must be the size of the range it delivers."""
    n = size_header(content_length)
    want = min(offset + length, total) - offset
    if n is not None and n != want:
        raise BadReply(f"a 206 of {want} bytes with Content-Length {n}")
