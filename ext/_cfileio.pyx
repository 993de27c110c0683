# cython: language_level=3
"""Open-and-size in one call, for planners that open thousands of small files per request.

`os.open` + `os.fstat` build a full stat_result per file; this returns only what a batch
needs (the fd and the size) and does both syscalls without the GIL.
"""
from libc.errno cimport errno
from posix.fcntl cimport open as c_open
from posix.stat cimport struct_stat, fstat, S_ISREG
from posix.unistd cimport close
import os


def open_sized(path, int flags):
    """(fd, size) of the regular file at `path` opened with `flags`; (-1, 0) when it exists
    but is not a regular file. Raises OSError like os.open."""
    cdef bytes p = os.fsencode(path)
    cdef const char *cp = p
    cdef int fd
    cdef int err = 0
    cdef struct_stat st
    cdef int rc
    with nogil:
        fd = c_open(cp, flags)
        if fd < 0:
            err = errno
        else:
            rc = fstat(fd, &st)
            if rc < 0:
                err = errno
                close(fd)
                fd = -1
            elif not S_ISREG(st.st_mode):
                close(fd)
                fd = -2
    if fd == -1:
        raise OSError(err, os.strerror(err), path)
    if fd == -2:
        return -1, 0
    return fd, st.st_size
