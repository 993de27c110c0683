"""The S3 backend (over a real moto server) passes the storage conformance tests, and does
what only a remote backend must: a verified read cache, write-through PUT, remote errors."""
import io
import itertools

import pytest

from getbatch.store import BucketNotFound, ObjectNotFound
from getbatch.store.errors import NotSupported
from getbatch.store.remote import RemoteStore
from getbatch.store.s3 import S3Client

from .conformance import BackendConformance

_names = itertools.count()


def s3_store(moto, data_dir, cache=64 << 20):
    return RemoteStore(S3Client(moto.url, "us-east-1"), data_dir, cache_bytes=cache)


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


class TestS3Conformance(BackendConformance):
    @pytest.fixture
    def backend(self, moto, tmp_path):
        return s3_store(moto, tmp_path / "data")

    @pytest.fixture
    def bucket(self, backend):
        name = f"conf-{next(_names)}"
        backend.create_bucket(name)
        return name

    def test_bucket_lifecycle(self, backend):
        """Remote buckets are the remote store's: created there, never destroyed by us."""
        name = f"lc-{next(_names)}"
        assert not backend.has_bucket(name)
        with pytest.raises(BucketNotFound) as ei:
            backend.require_bucket(name)
        assert f'"aws://{name}"' in str(ei.value)
        backend.create_bucket(name)
        assert backend.has_bucket(name) and name in backend.list_buckets()
        assert backend.bucket_props(name)["provider"] == "aws"
        with pytest.raises(NotSupported, match="remote bucket"):
            backend.destroy_bucket(name)
        assert backend.has_bucket(name)

    def test_append_and_flush(self, backend, bucket):
        with pytest.raises(NotSupported, match="append is not supported on aws://"):
            backend.append(bucket, "ap", "", io.BytesIO(b"abc"), 3)
        with pytest.raises(ObjectNotFound):
            backend.stat(bucket, "ap")
