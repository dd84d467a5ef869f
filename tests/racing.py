"""Threads released at the same instant: stores, replicas or workers racing for the same rows."""

from __future__ import annotations

import threading


def race(count: int, work) -> list:
    """Run ``work(index)`` in ``count`` threads released at the same instant; their results (or exceptions)."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work(index)
        except Exception as exc:  # noqa: BLE001  (the test inspects it)
            results[index] = exc

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def race_stores(store, count: int, work) -> list:
    """``race`` with ``work(replica, index)`` on ``count`` JobStores of their own on ``store``'s database (connections
    apart, like replicas or workers in separate processes), closed afterwards."""
    from openkontext.jobs.store import JobStore

    url = store.db.url.render_as_string(hide_password=False)
    replicas = [JobStore(url) for _ in range(count)]
    try:
        return race(count, lambda index: work(replicas[index], index))
    finally:
        for replica in replicas:
            replica.close()
