"""Shard bytes in every input format, for the end-to-end tests that store shards as objects."""
import io
import warnings
import zipfile

from tests.archive.tarhelp import compress, make_tar

EXT = {"tar": ".tar", "tgz": ".tgz", "tar.gz": ".tar.gz", "tar.lz4": ".tar.lz4", "zip": ".zip"}


def shard_bytes(fmt, members):
    """The bytes of a shard in `fmt` (a key of EXT) holding `members`, [(name, data)]."""
    if fmt == "zip":
        buf = io.BytesIO()
        with warnings.catch_warnings(), zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            warnings.simplefilter("ignore")  # duplicate names are made on purpose
            for name, data in members:
                zf.writestr(name, data)
        return buf.getvalue()
    tar = make_tar(members)
    if fmt == "tar":
        return tar
    return compress(tar, "tgz" if fmt in ("tgz", "tar.gz") else fmt)
