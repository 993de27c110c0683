"""getbatch.batch: a GetBatch request from JSON to an ordered output archive.

request.py parses and validates a MossReq; plan.py resolves every entry against a
store (object, byte range, or shard member) before any byte is sent; assemble.py
turns a plan into output bytes (zero-copy emit items for .tar, a streaming writer
for the other formats, a multipart wrapper for buffered mode). No HTTP here.
"""
