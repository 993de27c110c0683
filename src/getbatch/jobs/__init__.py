"""getbatch.jobs: background jobs of a node and the registry every worker process reads.

`registry.py` records jobs (multi-object delete/prefetch/evict today; GetBatch and rebalance
jobs fit the same record) as small files any process of the node can read; `template.py`
expands AIS object-name templates; `listrange.py` runs the multi-object jobs.
"""
from .registry import JobNotFound, Registry, TooManyJobs

__all__ = ["JobNotFound", "Registry", "TooManyJobs"]
