"""A ZIP's central directory as Member records (ext/_czipcd.pyx or its twin zipcd_py.py).

read_central_directory(fd, file_size, label) -> [Member], with Member.offset the local
header's offset; raises NotAnArchive / CorruptArchive naming the shard.
"""
from typing import TYPE_CHECKING

from ._accel import load
# a remote shard's directory costs two ranged reads; the parser's speed does not matter there
from .zipcd_py import read_central_directory_pread

if TYPE_CHECKING:  # both implementations have the twin's API (_czipcd.pyi says so)
    from .zipcd_py import read_central_directory
else:
    read_central_directory = load("zipcd").read_central_directory

__all__ = ["read_central_directory", "read_central_directory_pread"]
