"""Batch ids: unique within an app, and across the processes an app made before a fork serves
from (a WSGI server preloading the app): a child draws its own prefix."""
import os

from getbatch.batch.ids import BATCH_ID_PREFIX, BatchIds


def test_ids_are_unique_and_a_forked_child_draws_its_own_prefix():
    ids = BatchIds()
    mine = [ids.next() for _ in range(3)]
    assert len(set(mine)) == 3 and all(i.startswith(BATCH_ID_PREFIX) for i in mine)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child: its next id, then out at once (no pytest teardown here)
        os.write(w, ids.next().encode())
        os._exit(0)
    os.close(w)
    try:
        child = os.read(r, 100).decode()
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    assert child.startswith(BATCH_ID_PREFIX) and child[:12] != mine[0][:12]
    assert BatchIds().next()[:12] != mine[0][:12]   # another app: another prefix
