"""The process's event pipeline: settings, producer identity, sinks, exit.

There is one pipeline per process, created from the environment on first
use and replaced by ``configure()``. It numbers each event with the
producer id and the per-producer sequence number (so the receiver can count
what was lost), hands it to the sinks (the background sender, whose worker
writes the event out off the workflow's thread, see ``_pending``, and any
``flowledger.testing`` capture), counts internal errors and logs each kind
once, flushes at exit within a bound, and starts afresh in a forked child.

Multiprocessing children end with ``os._exit``, which skips ``atexit``: in
one (whatever the start method: fork, spawn, forkserver) the exit flush is
registered as a multiprocessing finalizer too, and a SIGTERM left at its
default (``Pool.terminate()``) flushes within ``exit_flush_s`` before the
process dies of it (see :func:`_watch_multiprocessing_exit`). A fork waits
while another thread builds the sinks (it may be importing the sender:
a child would inherit that import's lock held by a thread it does not have).
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import signal
import sys
import threading
from collections import Counter
from time import monotonic as _monotonic
from time import time_ns as _time_ns
from typing import Any, Final

from flowledger._wire import EventKind, new_event_id
from flowledger.instrument._config import Settings, settings_from_env
from flowledger.instrument._pending import EventData, PendingEvent
from flowledger.instrument.capture import CapturePolicy
from flowledger.instrument.delivery._sink import EventSink
from flowledger.instrument.delivery._wait import wait_s

__all__ = ["Pipeline", "configure", "flush", "pipeline", "shutdown", "stats"]

_log = logging.getLogger("flowledger")
DEFAULT_FLUSH_TIMEOUT_S: Final = 2.0
PER_SINK_COUNTERS: Final = ("enqueued", "sent", "spooled", "replayed", "dropped", "queued")
"""With several sinks, these counters are also given per sink as ``<sink>.<counter>``."""
SHUTDOWN_GRACE_S: Final = 0.05
"""With several sinks shut down side by side, how long past the budget to wait for the slowest."""


class _Deferring:
    """Keeps what a signal handler records while the sinks it would go to are being built (see ``_build_sinks``)."""

    takes_pending = True

    def __init__(self, into: list[tuple[PendingEvent, int]]) -> None:
        self._into = into

    def submit(self, event: Any, size: int) -> None:
        self._into.append((event, size))

    def flush(self, timeout_s: float) -> bool:
        return True

    def shutdown(self, timeout_s: float) -> bool:
        return True


class Pipeline:
    """Stamps events and hands them to the sinks. Never raises to its caller."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.disabled = settings.disabled
        self.policy = CapturePolicy(settings.redact_regex, settings.capture_limit_bytes)
        self.producer_id = new_event_id()
        self._producer_seqs: dict[str | None, itertools.count[int]] = {}
        """Per project (None: none) the numbers of its events: the receiver counts a producer per project, so each
        project's events are numbered apart (a gap in one is an event of that project lost)."""
        self._kept_seqs: dict[str | None, itertools.count[int]] = {}
        """The numbers of events a test capture keeps from delivery (``capture_events()``): apart, so that the
        delivered ones have no gap a receiver would count as lost."""
        self._numbering = self._producer_seqs
        """Which of the two numbers the next event: set with the sinks (:meth:`_build_sinks`)."""
        self._lock = threading.RLock()
        """Re-entrant: a signal handler that records may run while the thread it interrupted holds it."""
        self._building = False
        """True while this pipeline builds its sinks (under ``_lock``): a signal handler that records meanwhile,
        on the same thread, must not build them again (its events wait in ``_deferred``)."""
        self._deferred: list[tuple[PendingEvent, int]] = []
        self._deferring = ((_Deferring(self._deferred), True),)
        self._delivery_building = False
        """True while this pipeline builds its delivery sinks (in ``emit``, ``flush`` or ``delivery_sink``): a
        signal handler that records or flushes meanwhile must not build them again."""
        self._delivery: tuple[tuple[str, EventSink], ...] | None = None
        self._captures: list[tuple[EventSink, bool]] = []
        self._sinks: tuple[tuple[EventSink, bool], ...] | None = None  # (sink, takes_pending); None: not built yet
        self._errors: Counter[str] = Counter()
        self._emitted = 0
        self._closed = False
        self._dropped_closed = 0
        self._forked_ends = 0
        """Ends of a run or node attempt begun in the parent process that a forked child did not record."""
        self._last_stats: dict[str, dict[str, int]] = {}

    # --- sinks ---------------------------------------------------------

    def _build_sinks(self) -> tuple[tuple[EventSink, bool], ...]:
        with self._lock:
            if self._building or self._delivery_building:  # re-entered by a signal handler: its events wait
                return self._deferring
            self._building = True
            try:
                _watch_multiprocessing_exit()
                if _mp_exit_pid == pid:  # a multiprocessing child that records: flush when it is terminated
                    _install_sigterm_flush()
                sinks = [sink for sink, _ in self._captures]
                delivered = not any(not deliver for _, deliver in self._captures)
                self._numbering = self._producer_seqs if delivered else self._kept_seqs
                if delivered:
                    sinks.extend(sink for _, sink in self._ensure_delivery())
                self._sinks = built = tuple((sink, getattr(sink, "takes_pending", False) is True) for sink in sinks)
            finally:
                self._building = False
            self._submit_deferred(built)
            return built

    def _after_build(self) -> None:
        """Hand on what a signal handler recorded while ``flush`` or ``delivery_sink`` built the sinks."""
        if self._deferred:
            self._build_sinks()

    def _submit_deferred(self, sinks: tuple[tuple[EventSink, bool], ...]) -> None:
        """Hand the sinks what a signal handler recorded while they were being built (the caller holds the lock)."""
        while self._deferred:
            pending, size = self._deferred.pop(0)
            for sink, takes_pending in sinks:
                try:
                    sink.submit(pending if takes_pending else pending.event(), size)  # type: ignore[arg-type]
                except Exception as exc:
                    self.internal_error("emit", exc)

    def _ensure_delivery(self) -> tuple[tuple[str, EventSink], ...]:
        """The configured sinks (``settings.sinks``), built on first use; each named for its counters."""
        if self._delivery is None and not self._closed and not self._delivery_building:
            # lazy: the sender brings httpx, which ``import flowledger`` must not pay for
            from flowledger.instrument.delivery._build import build_sinks

            self._delivery_building = True
            try:
                self._delivery = build_sinks(self.settings, on_error=self.internal_error)
            finally:
                self._delivery_building = False
        return self._delivery or ()

    def delivery_sink(self, name: str) -> EventSink | None:
        """The configured sink named ``name`` (``"memory"``, ``"jsonl:PATH"``...), built if need be."""
        if self.disabled:
            return None
        with self._lock:
            found = next((sink for sink_name, sink in self._ensure_delivery() if sink_name == name), None)
        self._after_build()
        return found

    def add_capture(self, sink: EventSink, *, deliver: bool) -> None:
        with self._lock:
            self._captures.append((sink, deliver))
            self._sinks = None

    def remove_capture(self, sink: EventSink) -> None:
        with self._lock:
            self._captures = [(s, d) for s, d in self._captures if s is not sink]
            self._sinks = None

    # --- events --------------------------------------------------------

    def emit(
        self,
        kind: EventKind,
        run_id: str,
        seq: int,
        data: EventData,
        size: int = 256,
        ts_ns: int | None = None,
        project: str | None = None,
    ) -> None:
        """Number an event and hand it to every sink; ``project`` (the run's) wins over the configured one, and
        ``""`` (a run without a project, whatever the defaults) sends none.

        The event is written out (id, formatted time, data) by the first sink
        that needs it: a sink whose ``takes_pending`` is true gets the
        :class:`~flowledger.instrument._pending.PendingEvent`, any other the dict.
        """
        try:
            project = project or (None if project == "" else self.settings.project)
            sinks = self._sinks if self._sinks is not None else self._build_sinks()
            numbering = self._numbering
            numbers = numbering.get(project)
            if numbers is None:
                numbers = numbering.setdefault(project, itertools.count())
            pending = PendingEvent(
                kind, run_id, seq, self.producer_id, next(numbers), ts_ns or _time_ns(), project, data
            )
            self._emitted += 1
            if self._closed and not any(deliver for _, deliver in self._captures):
                self._dropped_closed += 1  # emitted after shutdown(): nothing will send it
            for sink, takes_pending in sinks:
                sink.submit(pending if takes_pending else pending.event(), size + 320)  # type: ignore[arg-type]
        except Exception as exc:
            self.internal_error("emit", exc)

    def internal_error(self, kind: str, exc: BaseException) -> None:
        """Count an internal failure; log the first of each kind only."""
        self._errors[kind] += 1
        if self._errors[kind] == 1:
            _log.warning("flowledger: internal error (%s), the workflow is not affected: %r", kind, exc)

    # --- lifecycle -----------------------------------------------------

    def flush(self, timeout_s: float) -> bool:
        """Flush every sink; the sender is started if need be, so that the spool is replayed.

        A process that calls ``flush()`` before it has emitted anything (a
        fresh process, or one just after ``configure()``) still replays what
        earlier processes left in the spool. A disabled pipeline, or one whose
        events a test capture keeps from delivery, starts no sender.
        """
        with self._lock:
            sinks = [sink for sink, _ in self._captures]
            delivery = self._delivery
            if delivery is None and not self.disabled and all(deliver for _, deliver in self._captures):
                delivery = self._ensure_delivery()
            sinks.extend(sink for _, sink in delivery or ())
        self._after_build()
        ok = True
        for sink in sinks:
            try:
                ok = sink.flush(timeout_s) and ok
            except Exception as exc:
                self.internal_error("flush", exc)
                ok = False
        return ok

    def shutdown(self, timeout_s: float) -> bool:
        """Shut every sink down within ``timeout_s`` (they flush side by side); their counters stay readable."""
        with self._lock:
            self._closed = True
            delivery, self._delivery = self._delivery or (), ()
            self._sinks = None
        if not delivery:
            return True
        if len(delivery) == 1:
            return self._shutdown_one(*delivery[0], timeout_s)
        results: dict[str, bool] = {}
        threads = [
            threading.Thread(
                target=lambda n=name, s=sink: results.__setitem__(n, self._shutdown_one(n, s, timeout_s)),
                name=f"flowledger-shutdown-{name}",
                daemon=True,
            )
            for name, sink in delivery
        ]
        deadline = _monotonic() + timeout_s + SHUTDOWN_GRACE_S
        started = []
        for thread, (name, sink) in zip(threads, delivery, strict=True):
            try:
                thread.start()
                started.append(thread)
            except RuntimeError:  # no new threads this late in the interpreter's exit: this sink in turn
                results[name] = self._shutdown_one(name, sink, max(deadline - _monotonic(), 0.0) / len(delivery))
        for thread in started:
            thread.join(max(deadline - _monotonic(), 0.0))
        return len(results) == len(delivery) and all(results.values())

    def _shutdown_one(self, name: str, sink: EventSink, timeout_s: float) -> bool:
        try:
            return sink.shutdown(timeout_s)
        except Exception as exc:
            self.internal_error("shutdown", exc)
            return False
        finally:
            last = getattr(sink, "stats", None)
            if callable(last):  # the counters stay readable after shutdown
                try:
                    self._last_stats[name] = last()
                except Exception as exc:
                    self.internal_error("stats", exc)

    def stats(self) -> dict[str, int]:
        """The pipeline's counters and its sinks': each counter summed over the sinks.

        With several sinks, each one's counters are also given as
        ``<sink>.<counter>`` (``jsonl:runs.jsonl.sent``).
        """
        out: dict[str, int] = {"emitted": self._emitted}
        per_sink: dict[str, dict[str, int]] = dict(self._last_stats)
        for name, sink in self._delivery or ():
            sink_stats = getattr(sink, "stats", None)
            if callable(sink_stats):
                try:
                    per_sink[name] = sink_stats()
                except Exception as exc:
                    self.internal_error("stats", exc)
        for counters in per_sink.values():
            for key, value in counters.items():
                out[key] = out.get(key, 0) + value
        if len(per_sink) > 1:
            for name, counters in per_sink.items():
                out.update({f"{name}.{key}": counters[key] for key in PER_SINK_COUNTERS if key in counters})
        if self._forked_ends:
            out["forked_ends"] = self._forked_ends
        if self._dropped_closed:
            out["dropped_closed"] = out.get("dropped_closed", 0) + self._dropped_closed
            out["dropped"] = out.get("dropped", 0) + self._dropped_closed
        out["internal_errors"] = sum(self._errors.values())
        return out

    def _after_fork(self) -> None:
        # The child is a new producer with counters of its own; the sender resets itself after fork.
        self.producer_id = new_event_id()
        self._producer_seqs, self._kept_seqs = {}, {}
        self._numbering = self._producer_seqs
        self._sinks = None  # chooses the numbering again
        self._errors = Counter()
        self._emitted = 0
        self._dropped_closed = 0
        self._forked_ends = 0
        self._last_stats = {}
        self._deferred.clear()

    def forked_end(self) -> None:
        """Count the end of a run or attempt begun in the parent that this forked child does not record."""
        self._forked_ends += 1


_current: Pipeline | None = None
_current_lock = threading.RLock()
pid = os.getpid()
"""This process's id, kept up to date across fork (``os.getpid()`` is a system call): runs and node attempts note
where they began, so that a forked child does not record the end of one its parent began."""


def pipeline() -> Pipeline:
    """The process's pipeline, created from the environment on first use."""
    p = _current
    if p is not None:
        return p
    return _create(None)


def _create(settings: Settings | None) -> Pipeline:
    global _current
    with _current_lock:
        if settings is None and _current is not None:
            return _current
        old = _current
        _current = Pipeline(settings if settings is not None else settings_from_env())
        if old is not None:  # open test captures stay open across configure()
            _current._captures = list(old._captures)
    if old is not None:
        old.shutdown(old.settings.exit_flush_s)
    return _current


def configure(**changes: Any) -> Settings:
    """Change settings in code; see :class:`~flowledger.instrument._config.Settings`.

    Raises ConfigError naming a setting that does not exist or a value that
    cannot be used. Events already queued are flushed under the old settings.
    """
    base = _current.settings if _current is not None else settings_from_env()
    settings = base.updated(**changes)
    _create(settings)
    return settings


def flush(timeout_s: float | None = DEFAULT_FLUSH_TIMEOUT_S) -> bool:
    """Send what is queued and replay the spool, waiting at most ``timeout_s`` (None: until done); return whether
    all went out.

    Works in a process that has emitted nothing yet: the spool left by
    earlier processes is replayed all the same. A timeout that is not a number is a UsageError.
    """
    return pipeline().flush(wait_s(timeout_s))


def shutdown(timeout_s: float | None = None) -> bool:
    """Flush within ``timeout_s`` (default: the exit budget), spool the rest, stop the worker."""
    p = _current
    if p is None:
        return True
    return p.shutdown(p.settings.exit_flush_s if timeout_s is None else timeout_s)


def stats() -> dict[str, int]:
    """Counters: emitted, enqueued, sent, dropped (and why), spooled, replayed, retries, failures."""
    return pipeline().stats()


_exit_flushing = False
"""True while ``_at_exit`` flushes: a SIGTERM arriving meanwhile waits for it (see ``_flush_on_sigterm``)."""
_terminate_after_flush = False


@atexit.register
def _at_exit() -> None:
    global _exit_flushing
    p = _current
    if p is None or _exit_flushing:
        return
    _exit_flushing = True
    try:
        p.shutdown(p.settings.exit_flush_s)
    finally:
        _exit_flushing = False
        if _terminate_after_flush:
            _die_of_sigterm()


# --- fork and multiprocessing ----------------------------------------------------

_FORK_WAIT_S: Final = 10.0
"""How long a fork waits for another thread to finish building the sinks before it goes ahead regardless."""
_held_at_fork: list[threading.RLock] = []
"""The locks ``_before_fork`` took, released after the fork in parent and child alike."""
_client_lock_at_fork: list[threading.RLock] = []
"""The delivery's client-making lock, when ``_before_fork`` took it (see ``_transport.CLIENT_BUILD_LOCK``)."""


def _before_fork() -> None:
    """Take the pipeline's locks, so that a fork waits while another thread builds the sinks.

    The build imports the sender (and httpx) under the lock: a child forked
    meanwhile would inherit that import's module lock held by a thread it
    does not have, and hang on its first event. The locks are re-entrant, so
    a thread that forks while it holds them (a signal handler) goes ahead.
    """
    try:
        if _current_lock.acquire(timeout=_FORK_WAIT_S):
            _held_at_fork.append(_current_lock)
            p = _current
            if p is not None and p._lock.acquire(timeout=_FORK_WAIT_S):
                _held_at_fork.append(p._lock)
        transport = sys.modules.get("flowledger.instrument.delivery._transport")  # loaded with the sinks only
        if transport is not None and transport.CLIENT_BUILD_LOCK.acquire(timeout=_FORK_WAIT_S):
            _client_lock_at_fork.append(transport.CLIENT_BUILD_LOCK)  # no thread of ours inside OpenSSL's set-up
    except Exception:  # never let the fork hook fail the fork
        pass


def _release_held_at_fork() -> bool:
    """Release what ``_before_fork`` took; whether it took everything (else a lock may be held by a lost thread)."""
    while _client_lock_at_fork:
        try:
            _client_lock_at_fork.pop().release()
        except Exception:
            pass
    complete = len(_held_at_fork) == (1 if _current is None else 2)
    while _held_at_fork:
        try:
            _held_at_fork.pop().release()
        except Exception:
            complete = False
    return complete


def _after_fork_in_parent() -> None:
    _release_held_at_fork()


def _after_fork_in_child() -> None:
    global _current_lock, pid, _exit_flushing, _terminate_after_flush
    pid = os.getpid()
    _exit_flushing = _terminate_after_flush = False
    if not _release_held_at_fork():  # a lock another thread held past the wait: the child's are fresh
        _current_lock = threading.RLock()
        if _current is not None:
            _current._lock = threading.RLock()
    if _current is not None:
        _current._after_fork()
    # A multiprocessing child ends with os._exit, which skips atexit; its own exit hooks still run.
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None:
        try:  # multiprocessing clears its exit hooks after this runs; register once it has
            mp_util.register_after_fork(_FORK_TOKEN, _flush_at_multiprocessing_exit)
        except Exception:  # never let the fork hook fail the child
            pass


class _Token:
    """Something multiprocessing can hold a weak reference to."""


_FORK_TOKEN: Final = _Token()
_mp_exit_pid = 0
"""The process whose multiprocessing exit flush is registered (see ``_watch_multiprocessing_exit``)."""


def _watch_multiprocessing_exit() -> None:
    """In a multiprocessing child, flush at its exit and when it is terminated; once per process.

    A child of any start method ends with ``os._exit``: a forked one skips
    ``atexit``, and so does one started by a forkserver (which imports
    flowledger after its fork, so no fork hook of ours ran). A spawned one
    happens to call ``sys.exit``, but this flush runs first there too: one
    mechanism for all three. Multiprocessing runs its finalizers as the
    child ends, after the target returned. ``Pool.terminate()`` (and so
    ``with Pool() as pool``) sends SIGTERM while the workers' last events
    still wait for their batch: see :func:`_flush_on_sigterm`.

    Called where the sinks are built (first event), and when flowledger is
    imported while a spawned or forkserver child unpickles its target (a
    forkserver child's bootstrap clears the finalizers after that, then runs
    the after-fork hooks, which register it again, as in a forked child).
    """
    global _mp_exit_pid
    if _mp_exit_pid == pid:
        return
    mp_process = sys.modules.get("multiprocessing.process")
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_process is None or mp_util is None:
        return
    try:
        if getattr(mp_process.current_process(), "_inheriting", False):  # before the child's bootstrap
            # a forkserver child's bootstrap clears the finalizers, then runs the after-fork hooks; a spawned
            # child's does neither
            mp_util.register_after_fork(_FORK_TOKEN, _flush_at_multiprocessing_exit)
            _flush_at_multiprocessing_exit(_FORK_TOKEN)
        elif mp_process.parent_process() is not None:
            _flush_at_multiprocessing_exit(_FORK_TOKEN)
    except Exception:  # never let this fail the caller
        pass


def _flush_at_multiprocessing_exit(_token: object) -> None:
    global _mp_exit_pid
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is None:
        return
    _mp_exit_pid = pid
    mp_util.Finalize(None, _at_exit, exitpriority=100)


def _install_sigterm_flush() -> None:
    """Flush on SIGTERM in this multiprocessing child, if SIGTERM is left at its default and this is the main thread.

    Only once the child records (its sinks are built): Python runs a signal
    handler when the main thread next runs Python code, so a worker busy in
    one long native call (or stuck in one) dies of ``terminate()`` only when
    that call returns, where the default action killed it at once; a child
    that records nothing keeps that default. A handler of the program's own
    is never replaced.
    """
    try:
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _flush_on_sigterm)
    except Exception:  # no signals here (another interpreter, a platform without them)
        pass


def _flush_on_sigterm(signum: int, frame: object) -> None:
    """Flush within ``exit_flush_s`` (spooling the rest), then die of SIGTERM as the default action would.

    ``Pool.terminate()`` keeps its meaning: the worker ends, killed by
    SIGTERM (exit code -15), no later than the exit flush bound after the
    signal reaches Python code. A signal that interrupts the exit flush
    itself (a worker leaving as it is terminated) lets it finish first.
    """
    global _terminate_after_flush
    if _exit_flushing:
        _terminate_after_flush = True
        return
    try:
        _at_exit()
    finally:
        _die_of_sigterm()


def _die_of_sigterm() -> None:
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    except ValueError:  # not the main thread: the handler, run again there, finds nothing left to flush
        pass
    os.kill(os.getpid(), signal.SIGTERM)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)
_watch_multiprocessing_exit()  # imported while a spawned or forkserver child unpickles its target
