# cython: language_level=3
"""The emit loop: writes a sequence of (head, source, offset, length, pad) items to a sink fd.

Small items are gathered into one reused buffer (header copied, data pread straight
into it) and leave in large writes; items of at least `sendfile_min` bytes are sent
with sendfile(2) from their file (zero copy). Items are converted to C structs in
chunks, then the chunk's syscalls run without the GIL so other request threads run.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.buffer cimport PyObject_CheckBuffer, PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from libc.errno cimport errno, EINTR, EAGAIN

cdef extern from "errno.h":
    int EWOULDBLOCK
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset
from posix.unistd cimport pread, write
from posix.types cimport off_t
import os

from getbatch.archive.errors import EmitError

cdef extern from "fcntl.h":
    int O_CLOEXEC

cdef extern from "sys/sendfile.h" nogil:
    ssize_t sendfile(int out_fd, int in_fd, off_t *offset, size_t count)

cdef extern from "poll.h" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd *fds, unsigned long nfds, int timeout)
    short POLLOUT

cdef enum:
    K_NONE = 0
    K_FD = 1
    K_INLINE = 2
    CHUNK = 256

cdef enum:
    E_OK = 0
    E_READ = 1
    E_SHORT = 2
    E_SINK = 3
    E_TIMEOUT = 4

cdef struct Item:
    const char *head
    Py_ssize_t head_len
    int kind
    int fd
    const char *data
    long long offset
    long long length
    long long pad


cdef class _Sink:
    cdef int fd
    cdef char *buf
    cdef Py_ssize_t cap
    cdef Py_ssize_t pos
    cdef long long total
    cdef int timeout_ms
    cdef int err
    cdef int err_errno

    cdef int _write_all(self, const char *p, Py_ssize_t n) noexcept nogil:
        cdef ssize_t w
        while n > 0:
            w = write(self.fd, p, n)
            if w > 0:
                p += w
                n -= w
                self.total += w
            elif w < 0 and errno == EINTR:
                continue
            elif w < 0 and (errno == EAGAIN or errno == EWOULDBLOCK):
                if self.wait_writable() < 0:
                    return -1
            else:
                self.err = E_SINK
                self.err_errno = errno
                return -1
        return 0

    cdef int wait_writable(self) noexcept nogil:
        """Wait for room in the sink (non-blocking or SO_SNDTIMEO sockets); -1 on timeout."""
        cdef pollfd pfd
        pfd.fd = self.fd
        pfd.events = POLLOUT
        if poll(&pfd, 1, self.timeout_ms) == 0:
            self.err = E_TIMEOUT
            return -1
        return 0

    cdef int flush(self) noexcept nogil:
        cdef int rc = 0
        if self.pos:
            rc = self._write_all(self.buf, self.pos)
            self.pos = 0
        return rc

    cdef Py_ssize_t room(self, long long n) noexcept nogil:
        """Free bytes at the buffer's end, at most n; flushes a full buffer first; -1 on error."""
        cdef Py_ssize_t room = self.cap - self.pos
        if room == 0:
            if self.flush() < 0:
                return -1
            room = self.cap
        return <Py_ssize_t>n if room > n else room

    cdef int put(self, const char *p, Py_ssize_t n) noexcept nogil:
        cdef Py_ssize_t room
        if n >= self.cap:
            if self.flush() < 0:
                return -1
            return self._write_all(p, n)
        while n > 0:
            room = self.room(n)
            if room < 0:
                return -1
            memcpy(self.buf + self.pos, p, room)
            self.pos += room
            p += room
            n -= room
        return 0

    cdef int zeros(self, long long n) noexcept nogil:
        cdef Py_ssize_t room
        while n > 0:
            room = self.room(n)
            if room < 0:
                return -1
            memset(self.buf + self.pos, 0, room)
            self.pos += room
            n -= room
        return 0

    cdef int pread_into(self, int fd, long long off, long long n) noexcept nogil:
        cdef ssize_t r
        cdef Py_ssize_t room
        while n > 0:
            room = self.room(n)
            if room < 0:
                return -1
            r = pread(fd, self.buf + self.pos, room, <off_t>off)
            if r < 0:
                if errno == EINTR:
                    continue
                self.err = E_READ
                self.err_errno = errno
                return -1
            if r == 0:
                self.err = E_SHORT
                return -1
            self.pos += r
            off += r
            n -= r
        return 0

    cdef int send_file(self, int fd, long long off, long long n) noexcept nogil:
        cdef off_t o = <off_t>off
        cdef ssize_t r
        if self.flush() < 0:
            return -1
        while n > 0:
            r = sendfile(self.fd, fd, &o, <size_t>(n if n < 0x40000000 else 0x40000000))
            if r > 0:
                n -= r
                self.total += r
            elif r == 0:
                self.err = E_SHORT
                return -1
            elif errno == EINTR:
                continue
            elif errno == EAGAIN or errno == EWOULDBLOCK:
                if self.wait_writable() < 0:
                    return -1
            else:
                # EINVAL/ENOSYS: this sink or source cannot sendfile; copy instead
                return self.pread_into(fd, <long long>o, n)
        return 0


cdef int _emit_one(_Sink s, Item *it, long long sendfile_min) noexcept nogil:
    cdef int fd
    cdef int rc = 0
    if it.head_len and s.put(it.head, it.head_len) < 0:
        return -1
    if it.length > 0:
        if it.kind == K_INLINE:
            if s.put(it.data + it.offset, <Py_ssize_t>it.length) < 0:
                return -1
        else:
            fd = it.fd
            if it.length >= sendfile_min:
                rc = s.send_file(fd, it.offset, it.length)
            else:
                rc = s.pread_into(fd, it.offset, it.length)
            if rc < 0:
                return -1
    if it.pad > 0:
        return s.zeros(it.pad)
    return 0


def emit(int sink_fd, items, Py_ssize_t bufsize=1 << 20, long long sendfile_min=1 << 16,
         int timeout_ms=120000):
    """Write every item to `sink_fd` in order; return the number of bytes written.

    item = (head: bytes, src, offset: int, length: int, pad: int); src is None (no data),
    an int fd, a bytes-like object (inline data sliced [offset:offset+length]) or an object
    whose fileno() gives the fd (called once, as the item is taken; an OSError from it fails
    that item). Fds are left open. `pad` zero bytes follow the data.
    Raises EmitError naming the failing item; bytes before it may have been written.
    """
    cdef _Sink s = _Sink()
    cdef Item *chunk = <Item *>malloc(CHUNK * sizeof(Item))
    cdef Py_buffer *views = <Py_buffer *>malloc(CHUNK * sizeof(Py_buffer))
    cdef int nviews = 0
    cdef Py_ssize_t i, n, start = 0, done
    cdef Item *it
    cdef int rc = 0
    cdef long long fsmin = sendfile_min
    if chunk == NULL or views == NULL:
        free(chunk)
        free(views)
        raise MemoryError()
    s.fd = sink_fd
    s.cap = bufsize
    s.buf = <char *>malloc(bufsize)
    s.timeout_ms = timeout_ms
    if s.buf == NULL:
        free(chunk)
        free(views)
        raise MemoryError()
    seq = items if isinstance(items, (list, tuple)) else list(items)
    total_n = len(seq)
    keep = []
    try:
        while start < total_n:
            n = min(CHUNK, total_n - start)
            keep.clear()
            for i in range(n):
                head, src, off, length, pad = seq[start + i]
                if type(head) is not bytes:
                    head = bytes(head)
                    keep.append(head)
                it = &chunk[i]
                it.head = PyBytes_AS_STRING(head)
                it.head_len = PyBytes_GET_SIZE(head)
                it.offset = off
                it.length = length
                it.pad = pad
                if src is None:
                    it.kind = K_NONE
                    if length:
                        raise ValueError(f"item {start + i}: length {length} with no source")
                elif isinstance(src, int):
                    it.kind = K_FD
                    it.fd = src
                elif not PyObject_CheckBuffer(src):
                    it.kind = K_FD
                    try:
                        it.fd = src.fileno()
                    except OSError as exc:
                        raise EmitError(start + i, str(exc), exc.errno or 0) from None
                else:
                    it.kind = K_INLINE
                    PyObject_GetBuffer(src, &views[nviews], PyBUF_SIMPLE)
                    nviews += 1
                    if off < 0 or off + length > views[nviews - 1].len:
                        raise ValueError(f"item {start + i}: [{off}, {off + length}) outside its data")
                    it.data = <const char *>views[nviews - 1].buf
            done = 0
            with nogil:
                while done < n:
                    rc = _emit_one(s, &chunk[done], fsmin)
                    if rc < 0:
                        break
                    done += 1
            for i in range(nviews):
                PyBuffer_Release(&views[i])
            nviews = 0
            if rc < 0:
                _raise(s, start + done, seq[start + done])
            start += n
        with nogil:
            rc = s.flush()
        if rc < 0:
            _raise(s, total_n - 1, seq[total_n - 1])
        return s.total
    finally:
        for i in range(nviews):
            PyBuffer_Release(&views[i])
        free(s.buf)
        free(chunk)
        free(views)


cdef _raise(_Sink s, Py_ssize_t index, item):
    what = f"item {index}"
    if s.err == E_READ:
        raise EmitError(index, f"cannot read {what}: {os.strerror(s.err_errno)}", s.err_errno)
    if s.err == E_SHORT:
        raise EmitError(index, f"{what} is shorter than the {item[3]} bytes planned (changed while being sent?)")
    if s.err == E_TIMEOUT:
        raise EmitError(index, "client did not accept data before the send timeout", 110)
    raise EmitError(index, f"cannot write to the client: {os.strerror(s.err_errno)}", s.err_errno)
