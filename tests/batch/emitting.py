"""Test helper: a batch body sent through the emit loop into a file."""
import os


def emit_to_file(out, path):
    """Send BatchOutput `out` through its emit loop into the file at `path` (created or
    truncated); returns what emit_to returns. The file keeps what went out before a failure."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        return out.emit_to(fd)
    finally:
        os.close(fd)
