"""getbatch.server: the AIStore-compatible HTTP API (Falcon resources) and its gunicorn worker."""
