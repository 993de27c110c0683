"""The emit loop: Cython and pure twin write identical bytes to sockets, pipes and files."""
import os
import socket
import threading

import pytest
from hypothesis import given, settings, strategies as st

from getbatch.archive import _accel

IMPLS = list(_accel.implementations("emit").values())  # the twin alone in a pure build


def _drain(sock, out):
    while True:
        b = sock.recv(1 << 20)
        if not b:
            break
        out.append(b)


def emit_to_socket(impl, items, **kw):
    a, b = socket.socketpair()
    got = []
    t = threading.Thread(target=_drain, args=(b, got))
    t.start()
    try:
        n = impl.emit(a.fileno(), items, **kw)
    finally:
        a.close()
        t.join()
        b.close()
    return n, b"".join(got)


def expected(items):
    out = bytearray()
    for head, src, off, length, pad in items:
        out += head
        if length:
            if isinstance(src, LazyFile):
                with open(src.path, "rb") as f:
                    f.seek(off)
                    out += f.read(length)
            elif isinstance(src, int):
                out += os.pread(src, length, off)
            else:
                out += bytes(src[off:off + length])
        out += bytes(pad)
    return bytes(out)


class LazyFile:
    """A source offering fileno(), opened on first use, as the store's lazy sources are."""

    opened = []

    def __init__(self, path):
        self.path = str(path)
        self.fd = -1

    def fileno(self):
        if self.fd < 0:
            self.fd = os.open(self.path, os.O_RDONLY)  # an OSError names the path
            LazyFile.opened.append(self.fd)
        return self.fd


@pytest.fixture
def files(tmp_path):
    paths = []
    for i, size in enumerate([0, 1, 511, 4096, 70000, 300000]):
        p = tmp_path / f"f{i}"
        p.write_bytes(os.urandom(size))
        paths.append(LazyFile(p))
    yield paths
    for fd in LazyFile.opened:
        os.close(fd)
    LazyFile.opened.clear()


@pytest.mark.parametrize("impl", IMPLS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("bufsize,sendfile_min", [(1 << 20, 1 << 16), (4096, 1 << 62), (1 << 20, 1)])
def test_socket_sources_fds_inline(impl, files, bufsize, sendfile_min):
    fd = os.open(files[4].path, os.O_RDONLY)
    try:
        items = []
        for p in files:
            size = os.path.getsize(p.path)
            items.append((b"H" * 512, p, 0, size, (-size) % 512))
        items.append((b"", fd, 100, 5000, 3))
        items.append((b"inline:", b"0123456789", 2, 5, 0))
        items.append((b"tail", None, 0, 0, 1024))
        n, got = emit_to_socket(impl, items, bufsize=bufsize, sendfile_min=sendfile_min)
        assert got == expected(items)
    finally:
        os.close(fd)
    assert n == len(got)


@pytest.mark.parametrize("impl", IMPLS, ids=lambda m: m.__name__)
def test_file_and_pipe_sinks(impl, files, tmp_path):
    items = [(b"x" * 10, p, 0, os.path.getsize(p.path), 7) for p in files]
    out = tmp_path / "out"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT)
    try:
        impl.emit(fd, items, sendfile_min=1)
    finally:
        os.close(fd)
    assert out.read_bytes() == expected(items)


@pytest.mark.parametrize("impl", IMPLS, ids=lambda m: m.__name__)
def test_missing_and_shrunk_sources_name_the_item(impl, files, tmp_path):
    items = [(b"a", files[3], 0, 4096, 0), (b"b", LazyFile(tmp_path / "gone"), 0, 10, 0)]
    with pytest.raises(impl.EmitError) as ei:
        emit_to_socket(impl, items)
    assert ei.value.index == 1 and "gone" in str(ei.value)
    for sendfile_min in (1, 1 << 30):
        items = [(b"a", files[3], 0, 9000, 0)]
        with pytest.raises(impl.EmitError) as ei:
            emit_to_socket(impl, items, sendfile_min=sendfile_min)
        assert ei.value.index == 0 and "shorter" in str(ei.value)


@pytest.mark.parametrize("impl", IMPLS, ids=lambda m: m.__name__)
def test_closed_peer_raises_not_crashes(impl, files):
    a, b = socket.socketpair()
    b.close()
    items = [(b"h" * 512, files[5], 0, 300000, 0)] * 20
    with pytest.raises(impl.EmitError):
        impl.emit(a.fileno(), items)
    a.close()


@pytest.mark.parametrize("impl", IMPLS, ids=lambda m: m.__name__)
def test_nonblocking_socket_waits_for_room(impl, files):
    a, b = socket.socketpair()
    a.setblocking(False)
    got = []
    t = threading.Thread(target=_drain, args=(b, got))
    t.start()
    items = [(b"h", files[5], 0, 300000, 0), (b"i", files[3], 0, 4096, 0)] * 10
    impl.emit(a.fileno(), items)
    a.close()
    t.join()
    b.close()
    assert b"".join(got) == expected(items)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=600), st.binary(max_size=3000), st.integers(0, 600)),
                max_size=30),
       st.sampled_from([1 << 10, 1 << 20]))
def test_twins_agree_on_inline_items(parts, bufsize):
    items = [(h, d, 0, len(d), pad) for h, d, pad in parts]
    outs = {emit_to_socket(impl, items, bufsize=bufsize)[1] for impl in IMPLS}
    assert outs == {expected(items)}
