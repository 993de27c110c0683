"""The emit loop (ext/_cemit.pyx or its twin emit_py.py).

emit(sink_fd, items, bufsize=1 MiB, sendfile_min=64 KiB) writes
(head, src, offset, length, pad) items to a socket or file descriptor: small items
gathered into one reused buffer, large file-backed ones sent with sendfile(2).
Failures raise errors.EmitError naming the item.
"""
from ._accel import load
from .errors import EmitError

emit = load("emit").emit

__all__ = ["emit", "EmitError"]
