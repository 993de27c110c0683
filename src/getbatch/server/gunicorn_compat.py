"""The gunicorn versions the worker runs under. GetBatchWorker builds on gthread's internals
(`method_queue`, `set_accept_enabled`, a 3-argument `accept`, `_keepalive_after`,
`unreader.take_buffered()`), which change between major versions. As gunicorn's own gevent
worker checks the gevent it gets, this module checks the gunicorn when it is imported
(worker.py imports it first, and startup.serve imports the worker before anything starts),
so a mismatched install fails at start-up with a line saying what to install."""
import gunicorn

# the range pyproject.toml pins, and the tests run under
TESTED = ((27, 0), (28, 0))   # from, up to (excluded)


class GunicornVersionError(RuntimeError):
    """The installed gunicorn is not one the worker was built for."""


def require_tested_gunicorn(version: tuple[int, ...] | None = None) -> None:
    """Raise GunicornVersionError unless `version` (default: the installed gunicorn's
    version_info) is in TESTED."""
    found = tuple(version or gunicorn.version_info)[:2]
    low, high = TESTED
    if not low <= found < high:
        raise GunicornVersionError(
            f"getbatch's worker needs gunicorn {low[0]}.{low[1]} up to (not including) "
            f"{high[0]}.{high[1]}, found {'.'.join(map(str, found))}: it builds on gthread "
            f"internals that other versions lack (pip install 'gunicorn>={low[0]}.{low[1]},"
            f"<{high[0]}.{high[1]}')")


require_tested_gunicorn()
