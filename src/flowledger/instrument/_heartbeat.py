"""The SDK's timer thread: run heartbeats, and late announcements of long nodes.

One daemon thread per process serves every open run:

- A running run says it is alive every ``heartbeat_interval_s``, so the
  receiver can tell a slow run (heartbeats keep coming) from one whose
  process died (they stop; the receiver's sweeper marks it ``stuck``).
- A node attempt's ``node_started`` event is sent only once the attempt has
  run for ``node_start_delay_s``; a shorter attempt is told by its one
  ``node_finished`` event, which then carries the input too. The delay is
  no longer than a batch waits in the queue anyway, so a crash loses no
  more than it would have, and short nodes cost one event instead of two.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Final, Protocol

from flowledger.instrument.delivery._wait import ReentrantEvent

__all__ = ["Announced", "Beating", "register", "unregister", "unwatch_node", "watch_node"]


class Beating(Protocol):
    """What the timer sends heartbeats for (a ``Run``)."""

    def heartbeat(self) -> None:
        """Tell the receiver the run is alive."""


class Announced(Protocol):
    """What the timer announces late (a ``NodeAttempt``)."""

    def announce(self) -> None:
        """Emit the attempt's ``node_started``."""


_IDLE_WAKE_S: Final = 60.0
_lock = threading.RLock()
"""Re-entrant: a signal handler that starts a run may interrupt the thread that holds it (in ``register``)."""
_runs: dict[int, tuple[Beating, float, float]] = {}  # id -> (run, interval_s, next_due)
_nodes: dict[int, tuple[Announced, float]] = {}  # id -> (attempt, due); insertion order = due order
_wake = ReentrantEvent()
_thread: threading.Thread | None = None
_next_wake = 0.0
_scanning = False
"""True while the timer reads the attempts watched and works out its next wake-up (see ``watch_node``)."""
_starting = False
"""True while a thread (holding ``_lock``) starts the timer: a signal handler re-entering then starts no second one."""


def _ensure_thread() -> None:
    """Start the timer unless it runs; the caller holds ``_lock``."""
    global _thread, _starting
    if _starting or (_thread is not None and _thread.is_alive()):
        return
    _starting = True
    try:
        thread = threading.Thread(target=_loop, name="flowledger-timer", daemon=True)
        thread.start()
        _thread = thread
    finally:
        _starting = False


def register(run: Beating, interval_s: float) -> None:
    """Send heartbeats for ``run`` every ``interval_s`` until it is unregistered."""
    due = time.monotonic() + interval_s
    with _lock:
        _runs[id(run)] = (run, interval_s, due)
        _ensure_thread()
    if due < _next_wake:
        _wake.set()


def unregister(run: Beating) -> None:
    with _lock:
        _runs.pop(id(run), None)


def watch_node(attempt: Announced, delay_s: float) -> None:
    """Announce ``attempt`` (its ``node_started``) if it still runs after ``delay_s``.

    No lock (this runs at the start of every attempt): one dict store is
    atomic, and the timer either sees the entry or is told. ``_scanning`` is
    read before ``_next_wake``: a scan under way may have missed the entry,
    so it is told; otherwise the next scan sees the entry, or the wake-up
    read is the one the last scan worked out.
    """
    due = time.monotonic() + delay_s
    _nodes[id(attempt)] = (attempt, due)
    if _thread is None:
        with _lock:
            _ensure_thread()
    if _scanning or due < _next_wake:
        _wake.set()


def unwatch_node(attempt: Announced) -> bool:
    """Stop watching ``attempt``; True when it was never announced.

    No lock (this runs at the end of every attempt): one dict pop is atomic,
    and whoever pops the entry, this or the timer, owns it.
    """
    return _nodes.pop(id(attempt), None) is not None


def _watched() -> list[tuple[int, tuple[Announced, float]]]:
    """A copy of the attempts watched, in due order.

    Other threads add and remove entries with no lock. ``dict.copy`` runs no
    Python code while it copies, so no thread can change the dict midway; a
    copy that fails anyway (a runtime where it can) is taken again rather
    than ending the timer.
    """
    while True:
        try:
            return list(_nodes.copy().items())
        except RuntimeError:  # changed size while copied
            continue


def _loop() -> None:
    global _next_wake, _scanning
    while True:
        beats: list[Beating] = []
        announce: list[Announced] = []
        with _lock:
            _scanning = True
            now = time.monotonic()
            next_wake = now + _IDLE_WAKE_S
            for key, (run, interval_s, next_due) in list(_runs.items()):
                if next_due <= now:
                    beats.append(run)
                    next_due = now + interval_s
                    _runs[key] = (run, interval_s, next_due)
                next_wake = min(next_wake, next_due)
            for key, (attempt, due) in _watched():  # the attempts in the copy keep their ids taken
                if due > now:
                    next_wake = min(next_wake, due)
                    break
                if _nodes.pop(key, None) is not None:  # not unwatched meanwhile: the timer announces it
                    announce.append(attempt)
            _next_wake = next_wake
            _scanning = False
        for attempt in announce:
            try:
                attempt.announce()
            except Exception:  # the timer must never die
                pass
        for run in beats:
            try:
                run.heartbeat()
            except Exception:
                pass
        _wake.wait(max(0.005, next_wake - time.monotonic()))
        _wake.clear()


def _after_fork_in_child() -> None:
    global _lock, _thread, _wake, _next_wake, _scanning, _starting
    _lock = threading.RLock()
    _starting = False
    _wake = ReentrantEvent()
    _thread = None
    _next_wake = 0.0
    _scanning = False
    _runs.clear()
    _nodes.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
