import pytest

from getbatch.store import LocalStore


@pytest.fixture
def store(tmp_path):
    s = LocalStore(tmp_path / "data")
    s.create_bucket("b")
    return s
