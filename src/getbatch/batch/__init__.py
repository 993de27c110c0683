"""getbatch.batch: a GetBatch request from JSON to an ordered output archive.

request.py parses and validates a MossReq; plan.py resolves every entry against a
store (object, byte range, or shard member) before any byte is sent, into the Items
of items.py; assemble.py turns a plan into output bytes (zero-copy emit items for .tar,
a streaming writer for the other formats, a multipart wrapper for buffered mode).
seams.py declares what these parts, and a cluster's gather, expect of each other. No HTTP here.
"""
