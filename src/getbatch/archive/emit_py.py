"""Pure-Python twin of ext/_cemit.pyx: same API, same bytes, same errors."""
import errno
import os
import select
from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar, Union

from .errors import EmitError


_R = TypeVar("_R")


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


# (head, src, offset, length, pad): `head` bytes first, then `length` bytes of `src` from
# `offset` (an fd, a file object, or bytes-like data), then `pad` zero bytes
EmitItem = tuple[Union[bytes, bytearray, memoryview, None],
                 Union[int, bytes, bytearray, memoryview, _HasFileno, None], int, int, int]


class _NoSendfile(Exception):
    """sendfile(2) does not work between this source and sink."""


class _Sink:
    def __init__(self, fd: int, bufsize: int, timeout_ms: int) -> None:
        self.fd = fd
        self.cap = bufsize
        self.buf = bytearray()
        self.total = 0
        self.timeout = timeout_ms / 1000.0

    def _wait(self, index: int) -> None:
        _, w, _ = select.select([], [self.fd], [], self.timeout)
        if not w:
            raise EmitError(index, "client did not accept data before the send timeout", errno.ETIMEDOUT)

    def _retry(self, call: Callable[..., _R], index: int, *args: object) -> _R:
        """call(*args) until it neither is interrupted nor would block (then wait for room)."""
        while True:
            try:
                return call(*args)
            except InterruptedError:
                continue
            except BlockingIOError:
                self._wait(index)
            except OSError as exc:
                if call is os.sendfile and exc.errno in (errno.EINVAL, errno.ENOSYS):
                    raise _NoSendfile() from None
                # an OSError from os.write/sendfile always carries an errno
                raise EmitError(index, f"cannot write to the client: {os.strerror(exc.errno)}",  # type: ignore[arg-type]
                                exc.errno)

    def write_all(self, data: bytes | bytearray | memoryview, index: int) -> None:
        view = memoryview(data)
        while view:
            n = self._retry(os.write, index, self.fd, view)
            view = view[n:]
            self.total += n

    def flush(self, index: int) -> None:
        if self.buf:
            self.write_all(self.buf, index)
            self.buf = bytearray()

    def put(self, data: bytes | bytearray | memoryview, index: int) -> None:
        self.buf += data
        if len(self.buf) >= self.cap:
            self.flush(index)

    def send_file(self, fd: int, off: int, n: int, index: int, what: str, planned: int) -> None:
        self.flush(index)
        while n > 0:
            try:
                sent = self._retry(os.sendfile, index, self.fd, fd, off, min(n, 1 << 30))
            except _NoSendfile:
                # this sink or source cannot sendfile; copy instead
                self.pread_into(fd, off, n, index, what, planned)
                return
            if sent == 0:
                raise EmitError(index, f"{what} is shorter than the {planned} bytes planned "
                                      "(changed while being sent?)")
            off += sent
            n -= sent
            self.total += sent

    def pread_into(self, fd: int, off: int, n: int, index: int, what: str, planned: int) -> None:
        while n > 0:
            try:
                data = os.pread(fd, min(n, self.cap), off)
            except OSError as exc:
                raise EmitError(index, f"cannot read {what}: {os.strerror(exc.errno)}",  # type: ignore[arg-type]
                                exc.errno)
            if not data:
                raise EmitError(index, f"{what} is shorter than the {planned} bytes planned "
                                      "(changed while being sent?)")
            self.put(data, index)
            off += len(data)
            n -= len(data)


def emit(sink_fd: int, items: Iterable[EmitItem], bufsize: int = 1 << 20, sendfile_min: int = 1 << 16,
         timeout_ms: int = 120000) -> int:
    """See ext/_cemit.pyx: write (head, src, offset, length, pad) items to sink_fd in order."""
    s = _Sink(sink_fd, bufsize, timeout_ms)
    index = 0
    for index, (head, src, off, length, pad) in enumerate(items):
        if src is not None and not isinstance(src, (int, bytes, bytearray, memoryview)):
            try:
                src = src.fileno()
            except OSError as exc:
                raise EmitError(index, str(exc), exc.errno or 0) from None
        if head:
            s.put(head, index)
        if length > 0:
            if src is None:
                raise ValueError(f"item {index}: length {length} with no source")
            if isinstance(src, (bytes, bytearray, memoryview)):
                if off < 0 or off + length > len(src):
                    raise ValueError(f"item {index}: [{off}, {off + length}) outside its data")
                s.put(memoryview(src)[off:off + length], index)
            elif length >= sendfile_min:
                s.send_file(src, off, length, index, f"item {index}", length)
            else:
                s.pread_into(src, off, length, index, f"item {index}", length)
        if pad > 0:
            s.put(bytes(pad), index)
    s.flush(index)
    return s.total
