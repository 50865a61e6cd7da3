"""The process's event pipeline: settings, producer identity, sinks, exit.

There is one pipeline per process, created from the environment on first
use and replaced by ``configure()``. It numbers each event with the
producer id and the per-producer sequence number (so the receiver can count
what was lost), hands it to the sinks (the background sender, whose worker
writes the event out off the workflow's thread, see ``_pending``, and any
``flowledger.testing`` capture), counts internal errors and logs each kind
once, flushes at exit within a bound, and starts afresh in a forked child.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import sys
import threading
from collections import Counter
from time import monotonic as _monotonic
from time import time_ns as _time_ns
from typing import Any, Final

from flowledger._wire import EventKind, new_event_id
from flowledger.instrument._capture import CapturePolicy
from flowledger.instrument._config import Settings, settings_from_env
from flowledger.instrument._pending import EventData, PendingEvent
from flowledger.instrument.delivery._sink import EventSink
from flowledger.instrument.delivery._wait import wait_s

__all__ = ["Pipeline", "configure", "flush", "pipeline", "shutdown", "stats"]

_log = logging.getLogger("flowledger")
DEFAULT_FLUSH_TIMEOUT_S: Final = 2.0
PER_SINK_COUNTERS: Final = ("enqueued", "sent", "spooled", "replayed", "dropped", "queued")
"""With several sinks, these counters are also given per sink as ``<sink>.<counter>``."""
SHUTDOWN_GRACE_S: Final = 0.05
"""With several sinks shut down side by side, how long past the budget to wait for the slowest."""


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
        self._lock = threading.Lock()
        self._delivery: tuple[tuple[str, EventSink], ...] | None = None
        self._captures: list[tuple[EventSink, bool]] = []
        self._sinks: tuple[tuple[EventSink, bool], ...] | None = None  # (sink, takes_pending); None: not built yet
        self._errors: Counter[str] = Counter()
        self._emitted = 0
        self._closed = False
        self._dropped_closed = 0
        self._last_stats: dict[str, dict[str, int]] = {}

    # --- sinks ---------------------------------------------------------

    def _build_sinks(self) -> tuple[tuple[EventSink, bool], ...]:
        with self._lock:
            sinks = [sink for sink, _ in self._captures]
            delivered = not any(not deliver for _, deliver in self._captures)
            if delivered:
                sinks.extend(sink for _, sink in self._ensure_delivery())
            self._numbering = self._producer_seqs if delivered else self._kept_seqs
            self._sinks = tuple((sink, getattr(sink, "takes_pending", False) is True) for sink in sinks)
            return self._sinks

    def _ensure_delivery(self) -> tuple[tuple[str, EventSink], ...]:
        """The configured sinks (``settings.sinks``), built on first use; each named for its counters."""
        if self._delivery is None and not self._closed:
            # lazy: the sender brings httpx, which ``import flowledger`` must not pay for
            from flowledger.instrument.delivery._build import build_sinks

            self._delivery = build_sinks(self.settings, on_error=self.internal_error)
        return self._delivery or ()

    def delivery_sink(self, name: str) -> EventSink | None:
        """The configured sink named ``name`` (``"memory"``, ``"jsonl:PATH"``...), built if need be."""
        with self._lock:
            if self.disabled:
                return None
            for sink_name, sink in self._ensure_delivery():
                if sink_name == name:
                    return sink
        return None

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
        if self._dropped_closed:
            out["dropped_closed"] = out.get("dropped_closed", 0) + self._dropped_closed
            out["dropped"] = out.get("dropped", 0) + self._dropped_closed
        out["internal_errors"] = sum(self._errors.values())
        return out

    def _after_fork(self) -> None:
        # The child is a new producer; the sender resets itself after fork.
        self.producer_id = new_event_id()
        self._producer_seqs, self._kept_seqs = {}, {}
        self._numbering = self._producer_seqs
        self._sinks = None  # chooses the numbering again
        self._lock = threading.Lock()


_current: Pipeline | None = None
_current_lock = threading.Lock()


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


@atexit.register
def _at_exit() -> None:
    p = _current
    if p is not None:
        p.shutdown(p.settings.exit_flush_s)


def _after_fork_in_child() -> None:
    global _current_lock
    _current_lock = threading.Lock()
    if _current is not None:
        _current._after_fork()
    # A multiprocessing child ends with os._exit, which skips atexit; its own
    # exit hooks still run, so flush there too (Pool.terminate() kills workers
    # outright: tasks that must report should call flowledger.flush()).
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None:
        try:  # multiprocessing clears its exit hooks after this runs; register once it has
            mp_util.register_after_fork(_FORK_TOKEN, _flush_at_multiprocessing_exit)
        except Exception:  # never let the fork hook fail the child
            pass


class _Token:
    """Something multiprocessing can hold a weak reference to."""


_FORK_TOKEN: Final = _Token()


def _flush_at_multiprocessing_exit(_token: object) -> None:
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None:
        mp_util.Finalize(None, _at_exit, exitpriority=100)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
