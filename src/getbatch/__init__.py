"""getbatch: ordered multi-object retrieval (AIStore GetBatch protocol) and an archive library.

Layers, each importing only the ones below it:

    cli.py    the commands (getbatch serve, cluster, get, ...)
    server/   HTTP: Falcon resources, AIS errors, the gunicorn worker; start-up in startup.py
    cluster/  etcd membership, HRW placement, the peer client, GetBatch across nodes (gather.py)
    batch/    a GetBatch from JSON to an ordered archive: request.py, plan.py, assemble.py
    store/    the storage interface and its backends, routed by provider
    archive/  the importable library: read shards, write output archives (no HTTP, no config)

A node starts in one place, server/startup.py (`getbatch serve`, and `wsgi_app` for other
WSGI servers); each app is built by server/app.create_app with its own NodeRuntime.
"""

__version__ = "0.1.0"
