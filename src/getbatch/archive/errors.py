"""Exceptions raised by the archive library.

Every error names the shard it is about. `MemberNotFound` is distinct from the
corruption errors so callers can turn a missing member into a soft error while a
broken shard stays a hard one.
"""


class ArchiveError(Exception):
    """Base class: something is wrong with a shard or an archive being written."""

    def __init__(self, shard: object, reason: str) -> None:
        self.shard = str(shard)
        self.reason = reason
        super().__init__(f"{self.shard}: {reason}")


class NotAnArchive(ArchiveError):
    """The shard's bytes match no supported format (.tar, .tgz, .tar.lz4, .zip)."""


class CorruptArchive(ArchiveError):
    """The shard is truncated or its headers are damaged (bad checksum, bad sizes, bad CRC)."""


class MemberNotFound(ArchiveError, KeyError):
    """The shard is readable but holds no regular file of that name."""

    def __init__(self, shard: object, name: str) -> None:
        self.name = name
        super().__init__(shard, f"{name} does not exist")

    def __str__(self) -> str:
        return f"{self.name} in {self.shard} does not exist"


class InflateLimit(ArchiveError):
    """Reading would decompress more than the request's InflateBudget allows (a decompression
    bomb, or a shard too big for the configured `max_inflate`)."""


class UnsafeName(ArchiveError, ValueError):
    """A member name with '..', an absolute path or NUL was about to touch the filesystem."""


class EmitError(OSError):
    """The emit loop could not send an item; `index` is its position in the sequence.
    Bytes before it may already be on the wire, so the caller must abort the response."""

    def __init__(self, index: int, message: str, err: int | None = 0) -> None:
        super().__init__(err, message)
        self.index = index
        self.message = message

    def __str__(self) -> str:
        return self.message
