"""A joining node whose id or advertise URL another live node has is refused, naming the other
(docs/consistency.md, "No duplicate nodes"); its own earlier run (same id and URL) is not."""
import json
from types import SimpleNamespace

import pytest

from getbatch.cluster.node import DuplicateNode, check_unique
from getbatch.cluster.smap import NodeInfo

LIVE = [SimpleNamespace(value=json.dumps({"id": "n1", "url": "http://10.0.0.1:51080"})),
        SimpleNamespace(value="not json: skipped")]


def test_an_id_live_at_another_url_is_refused():
    dup = check_unique(LIVE, NodeInfo("n1", "http://10.0.0.2:51080"))
    assert isinstance(dup, DuplicateNode)
    assert "node id n1 is already live" in str(dup) and "http://10.0.0.1:51080" in str(dup)


@pytest.mark.parametrize("url", ["http://10.0.0.1:51080", "http://10.0.0.1:51080/"])
def test_a_url_live_as_another_node_is_refused(url):
    dup = check_unique(LIVE, NodeInfo("n2", url))
    assert isinstance(dup, DuplicateNode)
    assert "already live in the cluster as node n1" in str(dup)


def test_its_own_earlier_run_and_a_new_node_are_admitted():
    assert check_unique(LIVE, NodeInfo("n1", "http://10.0.0.1:51080")) is None
    assert check_unique(LIVE, NodeInfo("n3", "http://10.0.0.3:51080")) is None
