"""The worker threads that run a run's sync node functions: daemon threads, so they never hold the exit.

``concurrent.futures.ThreadPoolExecutor`` joins its threads when the interpreter
exits: a sync node that outlived its ``timeout_s`` (its thread cannot be
stopped) then held the process until the function returned, forever if it
hung, though the run was long over. :class:`DaemonPool` is the small part of
that executor the runtime uses (``submit``, ``shutdown``) on daemon threads:
the process ends when the run does, and an abandoned call dies with it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Final

__all__ = ["DaemonPool"]

_STOP: Final = None
"""Put on the queue once per thread by :meth:`DaemonPool.shutdown`: that thread ends."""

_Job = tuple[Future[Any], Callable[[], Any]]


class DaemonPool:
    """Runs calls on up to ``max_workers`` daemon threads, started as calls come and kept while idle."""

    def __init__(self, max_workers: int, *, thread_name_prefix: str) -> None:
        self._max_workers = max_workers
        self._prefix = thread_name_prefix
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        """Its worker threads (as ThreadPoolExecutor's attribute of that name: the tests look at it)."""
        self._idle = 0
        self._closed = False

    def submit(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run ``fn()`` on a worker thread; its future has what it returned or raised."""
        future: Future[Any] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit a call to a worker pool that was shut down")
            if self._idle > 0:
                self._idle -= 1
            elif len(self._threads) < self._max_workers:
                name = f"{self._prefix}_{len(self._threads)}"
                thread = threading.Thread(target=self._work, name=name, daemon=True)
                thread.start()
                self._threads.add(thread)
            self._jobs.put((future, fn))
        return future

    def shutdown(self, *, cancel_futures: bool = False) -> None:
        """Let the threads end once their call is done (none is waited for); ``cancel_futures``: drop queued calls."""
        with self._lock:
            self._closed = True
            threads = len(self._threads)
        if cancel_futures:
            while True:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    job[0].cancel()
        for _ in range(threads):
            self._jobs.put(_STOP)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            future, fn = job
            if future.set_running_or_notify_cancel():
                try:
                    result = fn()
                except BaseException as exc:  # handed to the awaiting node, as ThreadPoolExecutor does
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del job, future, fn  # a finished call's values are not kept alive by an idle thread
            with self._lock:
                self._idle += 1
