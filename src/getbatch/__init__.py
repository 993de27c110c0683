"""getbatch: ordered multi-object retrieval (AIStore GetBatch protocol) and an archive library."""

__version__ = "0.1.0"
