"""Pure-Python twin of ext/_cfileio.pyx."""
import os
import stat


def open_sized(path: str | bytes, flags: int) -> tuple[int, int]:
    """(fd, size) of the regular file at `path` opened with `flags`; (-1, 0) when it exists
    but is not a regular file. Raises OSError like os.open."""
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return -1, 0
    return fd, st.st_size
