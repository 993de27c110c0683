"""boto3 is the `s3` extra: a node without it says what to install on an aws:// request."""
import subprocess
import sys

# a None entry in sys.modules makes `import botocore` raise ImportError, as on a node
# installed without the extra
PROBE = """
import sys
sys.modules["boto3"] = sys.modules["botocore"] = None
from getbatch.store.errors import NotSupported
from getbatch.store.s3 import S3Client
try:
    S3Client().list_buckets()
except NotSupported as exc:
    print(exc)
"""


def test_aws_request_without_boto3_names_the_extra():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "pip install 'getbatch[s3]'" in out.stdout
