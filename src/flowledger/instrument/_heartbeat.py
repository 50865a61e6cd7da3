"""Heartbeats: a running run says it is alive at a fixed interval.

One daemon thread per process serves every open run, so the receiver can
tell a run that is slow (heartbeats keep coming) from one whose process
died (they stop; the receiver's sweeper marks it ``stuck``).
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flowledger.instrument._run import Run

__all__ = ["register", "unregister"]

_lock = threading.Lock()
_runs: dict[int, tuple[Run, float, float]] = {}  # id -> (run, interval_s, next_due)
_wake = threading.Event()
_thread: threading.Thread | None = None


def register(run: Run, interval_s: float) -> None:
    """Send heartbeats for ``run`` every ``interval_s`` until it is unregistered."""
    global _thread
    with _lock:
        _runs[id(run)] = (run, interval_s, time.monotonic() + interval_s)
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_loop, name="flowledger-heartbeat", daemon=True)
            _thread.start()
        else:
            _wake.set()


def unregister(run: Run) -> None:
    with _lock:
        _runs.pop(id(run), None)


def _loop() -> None:
    while True:
        now = time.monotonic()
        due: list[Run] = []
        with _lock:
            next_wake = now + 60.0
            for key, (run, interval_s, next_due) in list(_runs.items()):
                if next_due <= now:
                    due.append(run)
                    next_due = now + interval_s
                    _runs[key] = (run, interval_s, next_due)
                next_wake = min(next_wake, next_due)
        for run in due:
            try:
                run.heartbeat()
            except Exception:  # a heartbeat must never kill the thread
                pass
        _wake.wait(max(0.01, next_wake - time.monotonic()))
        _wake.clear()


def _after_fork_in_child() -> None:
    global _lock, _thread, _wake
    _lock = threading.Lock()
    _wake = threading.Event()
    _thread = None
    _runs.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
