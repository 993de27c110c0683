"""getbatch.epochs: epoch plans, deterministic and resumable training input from shards.

`spec.py` validates what a client registers; `dataset.py` builds the compact sample list from
the shard listing; `order.py` is the per-epoch order and which part a rank's step is;
`plans.py` keeps records (a file, or etcd on a cluster) and caches; `request.py` turns a
GetBatch naming (plan, epoch, rank, step) into the entries every GetBatch carries;
`lookahead.py` warms the next steps. docs/epochs.md describes the contract.
"""
