"""extract_to writes regular files under the destination and refuses unsafe member names."""
import io
import os
import tarfile

import pytest

from getbatch.archive import UnsafeName, extract_to, open_shard


def _tar(path, members, dirs=()):
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for d in dirs:
            ti = tarfile.TarInfo(d)
            ti.type = tarfile.DIRTYPE
            tf.addfile(ti)
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))


def test_extracts_regular_files(tmp_path):
    p = tmp_path / "s.tar"
    _tar(p, [("a/b.txt", b"1"), ("./c.txt", b"22")], dirs=["a"])
    dest = tmp_path / "out"
    with open_shard(p) as sh:
        paths = extract_to(sh, dest)
    assert sorted(os.path.relpath(x, dest) for x in paths) == ["a/b.txt", "c.txt"]
    assert (dest / "a" / "b.txt").read_bytes() == b"1" and (dest / "c.txt").read_bytes() == b"22"


@pytest.mark.parametrize("bad", ["../evil", "a/../../evil", "/etc/evil"])
def test_refuses_unsafe_names_before_writing(tmp_path, bad):
    p = tmp_path / "s.tar"
    _tar(p, [("fine.txt", b"ok"), (bad, b"x")])
    dest = tmp_path / "out"
    with open_shard(p) as sh, pytest.raises(UnsafeName):
        extract_to(sh, dest)
    assert not dest.exists() and not (tmp_path / "evil").exists()
