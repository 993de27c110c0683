"""The WSGI entry point gunicorn loads (`getbatch.server.wsgi:app`).

Configured by environment: GETBATCH_DATA_DIR (default ./data), GETBATCH_NODE_ID.
"""
import logging
import os

from ..store.local import LocalStore
from .app import create_app

logging.basicConfig(level=os.environ.get("GETBATCH_LOG_LEVEL", "INFO"),
                    format="%(asctime)s %(levelname)s %(name)s: %(message)s")

store = LocalStore(os.environ.get("GETBATCH_DATA_DIR", "data"))
app = create_app(store, os.environ.get("GETBATCH_NODE_ID", "t[getbatch]"))
