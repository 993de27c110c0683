"""Waiting for a condition, not for a time: `until` polls and fails with what did not happen,
with a bound generous enough for a loaded machine (a test never sleeps a fixed time and then
asserts)."""
import time


def until(condition, what, timeout=30.0, every=0.05):
    """Poll `condition()` until it returns something true, and return that; after `timeout`
    seconds fail with `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} (waited {timeout:.0f} s)"
        time.sleep(every)
