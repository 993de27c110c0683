"""A WSGI entry point for servers other than `getbatch serve`: `getbatch.server.wsgi:app`.

A WSGI server looks for an app object in a module, so this one builds it when imported,
with the configuration from the environment (GETBATCH_*); how is startup.wsgi_app's.
`getbatch serve` does not use this module (startup.serve validates its configuration and
the data directory once, before any worker starts).
"""
from ..config import Config
from .startup import wsgi_app

app = wsgi_app(Config.load())
