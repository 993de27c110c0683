"""The local data directory passes the storage conformance tests."""
import pytest

from getbatch.store import LocalStore

from .conformance import BackendConformance


class TestLocalStoreConformance(BackendConformance):
    @pytest.fixture
    def backend(self, tmp_path):
        return LocalStore(tmp_path / "data", fsync=False)
