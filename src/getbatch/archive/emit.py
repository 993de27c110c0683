"""The emit loop (ext/_cemit.pyx or its twin emit_py.py).

emit(sink_fd, items, bufsize=1 MiB, sendfile_min=64 KiB) writes
(head, src, offset, length, pad) items to a socket or file descriptor: small items
gathered into one reused buffer, large file-backed ones sent with sendfile(2).
Failures raise errors.EmitError naming the item.
"""
from typing import TYPE_CHECKING

from ._accel import load
from .errors import EmitError

if TYPE_CHECKING:  # both implementations have the twin's API (_cemit.pyi says so)
    from .emit_py import emit
else:
    emit = load("emit").emit

__all__ = ["emit", "EmitError"]
