"""--jobs admission: job slots, memory and disk, and a too-big cell still runs alone."""
from __future__ import annotations

import threading
import time

from mxbuild.resources import GB, Need, ResourcePool


def _peak(pool, needs, hold=0.05):
    running, peak, lock = [0], [0], threading.Lock()

    def work(need):
        with pool.reserve(need):
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            time.sleep(hold)
            with lock:
                running[0] -= 1
    threads = [threading.Thread(target=work, args=(n,)) for n in needs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not any(t.is_alive() for t in threads)
    return peak[0]


def test_jobs_bound_concurrency():
    assert _peak(ResourcePool(2, 100 * GB, 100 * GB), [Need(GB, GB)] * 6) == 2
    assert _peak(ResourcePool(1, 100 * GB, 100 * GB), [Need(GB, GB)] * 3) == 1


def test_memory_and_disk_bound_it_further():
    assert _peak(ResourcePool(4, 5 * GB, 100 * GB), [Need(2 * GB, GB)] * 4) == 2
    assert _peak(ResourcePool(4, 100 * GB, 7 * GB), [Need(GB, 6 * GB)] * 3) == 1


def test_a_cell_bigger_than_the_host_runs_alone_instead_of_never():
    assert _peak(ResourcePool(2, 1 * GB, 1 * GB), [Need(4 * GB, 4 * GB)] * 2) == 1
