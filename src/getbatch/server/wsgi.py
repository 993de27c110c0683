"""The WSGI entry point gunicorn loads (`getbatch.server.wsgi:app`).

Configured by environment: GETBATCH_DATA_DIR (default ./data), GETBATCH_NODE_ID.
"""
import logging
import os
import resource

from ..store.local import LocalStore
from .app import create_app


def _raise_fd_limit():
    """Batches keep object files open between planning and sending (batch/plan.py sizes
    its fd budget from this limit at the first batch), so take the hard limit the system allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


_raise_fd_limit()

logging.basicConfig(level=os.environ.get("GETBATCH_LOG_LEVEL", "INFO"),
                    format="%(asctime)s %(levelname)s %(name)s: %(message)s")

store = LocalStore(os.environ.get("GETBATCH_DATA_DIR", "data"))
app = create_app(store, os.environ.get("GETBATCH_NODE_ID", "t[getbatch]"))
