"""The single node's end-to-end GetBatch tests (tests/server/test_moss.py and
test_moss_validation.py), run unchanged against a 3-node cluster with the unmodified SDK: the
request lands on one node (the DT), and about two thirds of its items live on the others.

The tests left out are about one node's internals (the same data dir under another WSGI
server or worker, a shard rewritten on disk under a running batch)."""
import pytest

from tests.server import test_moss as one
from tests.server import test_moss_validation as validation
from tests.support.nodes import make_client


@pytest.fixture(scope="module")
def node(cluster):
    """The node the requests land on."""
    return cluster.nodes[0]


@pytest.fixture
def client(node):
    return make_client(node.url)


objs, shards, bname = one.objs, one.shards, validation.bname

for _name in ("test_sdk_batch_order_and_content", "test_buffered_metadata",
              "test_opaque_urlsafe_accepted_and_echoed_standard", "test_ranges",
              "test_output_formats_tar_family", "test_output_zip",
              "test_tar_has_content_length_compressed_is_chunked",
              "test_archived_files_from_every_input_format",
              "test_member_names_and_ranges_in_members", "test_coer_placeholders",
              "test_missing_file_in_a_lone_shard",
              "test_zero_size_is_not_missing", "test_cross_bucket_and_onob",
              "test_ten_thousand_entries_in_order", "test_client_disconnect_mid_stream",
              "test_concurrent_batches", "test_writer_output_matches_server_tar",
              "test_sdk_plain_names_reach_into_shards"):
    globals()[_name] = getattr(one, _name)
for _name in dir(validation):
    if _name.startswith("test_"):
        globals()[_name] = getattr(validation, _name)
