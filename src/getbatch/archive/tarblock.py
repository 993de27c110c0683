"""TAR's block rule, for every module that writes or walks TAR: headers and data take whole
512-byte blocks, so member data is followed by zero bytes up to the next block boundary."""

BLOCK = 512


def tar_pad(size: int) -> int:
    """Zero bytes that follow `size` bytes of member data, up to the next block boundary."""
    return -size & (BLOCK - 1)
