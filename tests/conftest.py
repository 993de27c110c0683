"""Session fixtures shared by the test packages: real remote stores (moto S3, an HTTP origin)."""
import pytest

from .remote_servers import start_moto


@pytest.fixture(scope="session")
def moto(tmp_path_factory):
    server = start_moto(str(tmp_path_factory.mktemp("moto")))
    yield server
    server.stop()
