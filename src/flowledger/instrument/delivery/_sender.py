"""The background sender: events leave the process here.

``submit`` appends to a queue bounded in items and bytes (a full queue
drops the event and counts why) and returns at once. One daemon worker,
started on the first event, takes batches off the queue by count, bytes
and age, posts each as gzip-compressed ``{"events": [...]}`` JSON to the
receiver, and retries 5xx, 429 (honouring ``Retry-After``), connection
errors and timeouts with exponential backoff and full jitter, within a
time budget per batch; a 413 splits the batch (:mod:`._post` posts,
:mod:`._backoff` decides when to try again). While a batch is being
retried, a queue past its high-water mark is spooled rather than left to
overflow. A batch that cannot be delivered goes to the :class:`~._spool.Spool`;
while the receiver stays down, later batches go straight there and the
receiver is probed now and then. Spooled batches are replayed when a
sender starts, on ``flush()``/``replay()``, and as soon as the receiver
answers again.

``shutdown(timeout_s)`` (also run at exit) sends what it can in the time
given, then spools everything still in memory, queued and in flight, as
one file, so that a normal exit loses nothing and is never held much
longer than ``timeout_s``: the time kept for that write is estimated from
the bytes queued and the write speed the spool has measured. A forked
child starts with a fresh queue, worker and HTTP client. Nothing here
raises into the caller: internal errors are counted in ``failures`` and
logged once per kind.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from time import monotonic as _monotonic
from typing import Any, ClassVar, Final

import httpx
from opentelemetry import context as otel_context

from flowledger.instrument._config import Settings
from flowledger.instrument._pending import PendingEvent, stamped
from flowledger.instrument.delivery._backoff import BACKOFF_BASE_S, PROBE_MAX_S, PROBE_MIN_S, RETRY_BUDGET_S, Outage
from flowledger.instrument.delivery._counters import Counters, DropReason
from flowledger.instrument.delivery._otlp_spans import span_from_event
from flowledger.instrument.delivery._post import Delivery
from flowledger.instrument.delivery._span_sender import SpanSender
from flowledger.instrument.delivery._spool import Spool
from flowledger.instrument.delivery._transport import untraced

__all__ = ["DropReason", "Sender"]

HIGH_WATER_FRACTION: Final = 0.5
"""While the receiver fails, a queue this full (of its items or bytes) is spooled instead of waiting."""
IDLE_WAIT_S: Final = 1.0
"""With nothing queued the worker looks round this often (a new event wakes it at once)."""
SPOOL_RESERVE_S: Final = 0.03
"""Part of the shutdown budget kept for the file system's part of the spool write, besides encoding."""
SETTLE_WAIT_S: Final = 1.0
"""At shutdown, how long to wait for a spool write the worker has already begun."""
WORKER_JOIN_S: Final = 0.01


_senders: weakref.WeakSet[Sender] = weakref.WeakSet()


class Sender(Delivery):
    """Delivers events to the receiver in the background. Implements ``EventSink``."""

    takes_pending: ClassVar[bool] = True
    """The pipeline hands over a ``PendingEvent``: the worker writes it out, not the workflow's thread."""
    probe_min_s: ClassVar[float] = PROBE_MIN_S
    probe_max_s: ClassVar[float] = PROBE_MAX_S
    retry_budget_s: ClassVar[float] = RETRY_BUDGET_S

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.BaseTransport | None = None,
        export_spans: bool = False,
        spool_dir: Path | None = None,
    ) -> None:
        self._settings = settings
        self._transport = transport
        self._max_items = settings.queue_max_items
        self._max_bytes = settings.queue_max_bytes
        self._batch_items = settings.batch_max_items
        self._batch_bytes = settings.batch_max_bytes
        self._high_items = max(int(settings.queue_max_items * HIGH_WATER_FRACTION), 1)
        self._high_bytes = max(int(settings.queue_max_bytes * HIGH_WATER_FRACTION), 1)
        self._spool = Spool(spool_dir or settings.spool_dir, settings.spool_max_bytes)
        self._spans = SpanSender(settings, transport=transport) if export_spans else None
        self._reset()
        _senders.add(self)

    def _reset(self) -> None:
        self._lock = (
            threading.RLock()
        )  # re-entrant: a signal handler may submit while the thread it interrupted holds it
        self._changed = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._relieve = threading.Event()
        """Set when the queue passes its high-water mark while the receiver fails."""
        self._stop = threading.Event()
        self._shutdown_lock = threading.Lock()
        self._queue: deque[tuple[dict[str, Any] | PendingEvent, int, float]] = deque()
        self._queued_bytes = 0
        self._enqueued = 0
        self._inflight: Sequence[dict[str, Any] | PendingEvent] | None = None
        """The batch being delivered (for a moment, the pending events it is written out from)."""
        self._inflight_bytes = 0
        self._settling = 0
        self._draining = 0
        self._replay_wanted = False
        self._replay_names: list[str] | None = None
        self._worker: threading.Thread | None = None
        self._client: httpx.Client | None = None
        self._closed = False
        self._shutdown_result: bool | None = None
        self._outage = Outage(self.probe_min_s, self.probe_max_s)
        self._counters = Counters()

    def _reset_after_fork(self) -> None:
        self._reset()
        self._spool.reset_after_fork()
        if self._spans is not None:
            self._spans.reset_after_fork()

    # --- the EventSink protocol ----------------------------------------

    def submit(self, event: dict[str, Any] | PendingEvent, size: int) -> None:
        """Queue one event (a dict, or a pending one the worker writes out). O(1), never blocks, never raises.

        A full queue drops the event and counts why.
        """
        try:
            with self._lock:
                queue = self._queue
                count = len(queue)
                queued_bytes = self._queued_bytes + size
                if self._closed:
                    reason: DropReason | None = DropReason.CLOSED
                elif count >= self._max_items:
                    reason = DropReason.QUEUE_FULL
                elif queued_bytes > self._max_bytes:
                    reason = DropReason.QUEUE_BYTES
                else:
                    queue.append((event, size, _monotonic()))
                    self._queued_bytes = queued_bytes
                    self._enqueued += 1
                    count += 1
                    # Wake the worker for the first event of a batch (it then waits for the batch's
                    # age) and for a full batch; any other event it picks up with its batch.
                    wake = count == 1 or count >= self._batch_items or queued_bytes >= self._batch_bytes
                    relieve = self._outage.failing and (count >= self._high_items or queued_bytes >= self._high_bytes)
                    if not (wake or relieve) and self._worker is not None:
                        return  # the common case
                    reason = None
            if reason is not None:
                self._counters.drop(reason)
                self._counters.log_once(
                    f"drop-{reason}", "flowledger: dropping events (%s); see flowledger.stats().", reason
                )
                return
            if self._worker is None:
                self._start_worker()
            if wake and not self._wake.is_set():  # set: the worker has yet to clear it and take the queue
                self._wake.set()
            if relieve and not self._relieve.is_set():
                self._relieve.set()
        except Exception as exc:
            self._internal_error("submit", exc)

    def flush(self, timeout_s: float) -> bool:
        """Send what is queued and replay the spool; return whether all of it went out in time.

        Spans (with ``export_spans``) are flushed too, in what remains of
        ``timeout_s``, but they do not change the answer.
        """
        try:
            deadline = time.monotonic() + max(timeout_s, 0.0)
            with self._lock:
                if self._closed:
                    return not self._queue and self._inflight is None
                self._draining += 1
                self._replay_wanted = True
                self._outage.probe_now = True
                before = self._undelivered()
            try:
                self._start_worker()
                self._wake.set()
                with self._changed:
                    idle = self._changed.wait_for(self._idle, deadline - time.monotonic())
                    ok = idle and self._undelivered() == before
                if self._spans is not None:  # best effort: spans never change the answer
                    self._spans.flush(deadline - time.monotonic())
                return ok
            finally:
                with self._lock:
                    self._draining -= 1
        except Exception as exc:
            self._internal_error("flush", exc)
            return False

    def shutdown(self, timeout_s: float) -> bool:
        """Send what fits in ``timeout_s``, spool the rest, stop. Idempotent; never raises."""
        try:
            if not self._shutdown_lock.acquire(timeout=max(timeout_s, 0.0)):
                return False
            try:
                if self._shutdown_result is None:
                    self._shutdown_result = self._shutdown(timeout_s)
                return self._shutdown_result
            finally:
                self._shutdown_lock.release()
        except Exception as exc:
            self._internal_error("shutdown", exc)
            return False

    def stats(self) -> dict[str, int]:
        """Counters: enqueued, sent, dropped (and ``dropped_<reason>``), spooled, replayed, retries, ..."""
        out = self._counters.snapshot()
        with self._lock:
            out["enqueued"] = self._enqueued
            out["queued"] = len(self._queue)
        out["spool_corrupt"] = self._spool.corrupt_files
        out["spans_sent"] = self._spans.sent if self._spans is not None else 0
        out["spans_dropped"] = self._spans.dropped if self._spans is not None else 0
        return out

    def replay(self) -> None:
        """Ask the worker to deliver what waits in the spool (also done on start and flush)."""
        try:
            with self._lock:
                if self._closed:
                    return
                self._replay_wanted = True
                self._outage.probe_now = True
            self._start_worker()
            self._wake.set()
        except Exception as exc:
            self._internal_error("replay", exc)

    # --- lifecycle -------------------------------------------------------

    def _start_worker(self) -> None:
        error: RuntimeError | None = None
        with self._lock:
            if self._worker is not None or self._closed:
                return
            self._replay_wanted = True
            self._worker = threading.Thread(target=self._run, name="flowledger-sender", daemon=True)
            try:
                self._worker.start()
            except RuntimeError as exc:  # the interpreter is shutting down: shutdown() spools the queue
                self._worker = None
                error = exc
        if error is not None:
            self._internal_error("start", error)

    def _idle(self) -> bool:
        return not self._queue and self._inflight is None and self._settling == 0 and not self._replay_wanted

    def _undelivered(self) -> int:
        return self._counters.undelivered()

    def _shutdown(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + max(timeout_s, 0.0)
        with self._lock:
            before = self._undelivered()
            worker = self._worker
            self._draining += 1
            self._replay_wanted = False  # no new replay at exit: the next process does it
        send_until = deadline - self._spool_reserve_s()
        if worker is not None and worker.is_alive() and send_until > time.monotonic():
            self._wake.set()
            with self._changed:
                self._changed.wait_for(
                    lambda: self._outage.unreachable or self._outage.down or self._idle(),
                    max(send_until - time.monotonic(), 0.0),
                )
        with self._lock:
            self._closed = True
            queued = [event for event, _, _ in self._queue]
            self._queue.clear()
            self._queued_bytes = 0
            inflight = self._inflight or []
            self._inflight = None
            self._inflight_bytes = 0
        leftovers = stamped([*queued, *inflight])
        self._stop.set()
        self._wake.set()
        self._relieve.set()
        if leftovers:
            self._spool_events(leftovers)
        with self._changed:
            self._changed.wait_for(lambda: self._settling == 0, SETTLE_WAIT_S)
        if self._spans is not None:
            self._spans.shutdown(deadline - time.monotonic())
        if worker is not None and worker.is_alive():
            worker.join(WORKER_JOIN_S)
        with self._lock:
            return self._undelivered() == before

    def _spool_reserve_s(self) -> float:
        """Time to keep at exit for spooling what is still in memory (queued and in flight)."""
        with self._lock:
            nbytes = self._queued_bytes + self._inflight_bytes
        return SPOOL_RESERVE_S + self._spool.estimated_write_s(nbytes)

    # --- worker ----------------------------------------------------------

    def _run(self) -> None:
        token = untraced()
        try:
            try:
                self._http()  # build the client while the first batch fills
                self._spool.measure()  # and measure the spool, so that no exit has to
            except Exception as exc:
                self._internal_error("client", exc)
            while not self._stop.is_set():
                try:
                    self._step()
                except Exception as exc:
                    self._internal_error("worker", exc)
                    self._stop.wait(BACKOFF_BASE_S)
        finally:
            client, self._client = self._client, None
            if client is not None:
                client.close()  # the worker owns its client: closed when the worker ends
            otel_context.detach(token)
            with self._changed:
                self._changed.notify_all()

    def _step(self) -> None:
        self._wake.clear()
        batch = self._take_batch()
        if batch is not None:
            self._send_live(batch)
            return
        if self._replay_wanted:
            self._replay_one()
            return
        with self._changed:
            outage = self._outage
            if outage.down and time.monotonic() >= outage.probe_at:
                # Idle while the receiver is down: probe it by replaying the spool (a no-op when empty).
                self._replay_wanted = True
                outage.probe_now = True
                outage.reschedule_probe(time.monotonic())
                return
            self._changed.notify_all()
        self._wake.wait(self._wait_s())

    def _wait_s(self) -> float:
        now = time.monotonic()
        with self._lock:
            if self._queue:
                return max(self._settings.batch_max_age_s - (now - self._queue[0][2]), 0.0)
            if self._outage.down:
                return min(max(self._outage.probe_at - now, 0.0), IDLE_WAIT_S)
        return IDLE_WAIT_S

    def _take_batch(self) -> list[dict[str, Any]] | None:
        settings = self._settings
        with self._lock:
            if not self._queue:
                return None
            ready = (
                self._draining > 0
                or len(self._queue) >= settings.batch_max_items
                or self._queued_bytes >= settings.batch_max_bytes
                or time.monotonic() - self._queue[0][2] >= settings.batch_max_age_s
            )
            if not ready:
                return None
            taken: list[dict[str, Any] | PendingEvent] = []
            size = 0
            while self._queue and len(taken) < settings.batch_max_items:
                event, event_size, _ = self._queue[0]
                if taken and size + event_size > settings.batch_max_bytes:
                    break
                self._queue.popleft()
                taken.append(event)
                size += event_size
            self._queued_bytes -= size
            self._inflight = taken  # written out below, outside the lock
            self._inflight_bytes = size
        batch = stamped(taken)  # the events' dicts are made here, on the worker, not on the workflow's thread
        with self._lock:
            if self._inflight is not taken:  # shutdown() took them meanwhile (and spools them)
                return None
            self._inflight = batch
        return batch

    def _send_live(self, batch: list[dict[str, Any]]) -> None:
        if self._spans is not None:
            self._export_spans(self._spans, batch)
        leftovers: list[dict[str, Any]] = batch
        try:
            leftovers = self._deliver(batch, self._settings.max_retries)
        finally:
            with self._lock:
                mine = self._inflight is batch  # False: shutdown() took it and spooled it
                if mine:
                    self._inflight = None
                    self._inflight_bytes = 0
                    self._settling += 1
            if mine:
                try:
                    if leftovers:
                        self._spool_events(leftovers)
                finally:
                    with self._changed:
                        self._settling -= 1
                        self._changed.notify_all()

    def _export_spans(self, exporter: SpanSender, batch: list[dict[str, Any]]) -> None:
        try:
            exporter.submit([span for span in map(span_from_event, batch) if span is not None])
        except Exception as exc:
            self._internal_error("spans", exc)

    def _replay_one(self) -> None:
        if self._replay_names is None:
            self._replay_names = self._spool.ready_names()
        if not self._replay_names or self._stop.is_set():
            self._end_replay()
            return
        claim = self._spool.claim(self._replay_names.pop(0))
        if claim is None:
            if self._spool.corrupt_files:
                self._log_once(
                    "corrupt", "flowledger: moved an unreadable spool file to %s/corrupt.", self._spool.directory
                )
            return
        leftovers = claim.events
        sent_before = self._counters["sent"]  # only this thread adds to "sent"
        try:
            leftovers = self._deliver(claim.events, 0)
        finally:
            if not leftovers:
                claim.delete()
            elif len(leftovers) == len(claim.events):
                claim.release()
            else:
                self._spool_events(leftovers)
                claim.delete()
        delivered = self._counters["sent"] - sent_before
        if delivered:
            self._counters.add("replayed", delivered)
        if leftovers:
            self._end_replay()

    def _end_replay(self) -> None:
        with self._changed:
            self._replay_names = None
            self._replay_wanted = False
            self._changed.notify_all()

    # --- relief while a batch waits ----------------------------------------

    def _backoff_wait(self, delay_s: float) -> bool:
        """Wait before a retry; False when shutdown cut the wait short.

        Meanwhile, should the queue pass its high-water mark, it is spooled
        rather than left to overflow while this batch waits.
        """
        deadline = time.monotonic() + delay_s
        while not self._stop.is_set():
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                return True
            if self._relieve.wait(remaining_s) and not self._stop.is_set():
                self._relieve.clear()
                self._spool_queue()
        return False

    def _spool_queue(self) -> None:
        """Move everything queued to the spool (the receiver is failing and the queue is filling up)."""
        with self._lock:
            if self._closed or (len(self._queue) < self._high_items and self._queued_bytes < self._high_bytes):
                return
            queued = [event for event, _, _ in self._queue]
            self._queue.clear()
            self._queued_bytes = 0
            self._settling += 1  # an exit now waits for this write: the events are in neither queue nor flight
        try:
            events = stamped(queued)
            self._log_once(
                "high-water", "flowledger: the receiver is failing; spooling the queue to %s.", self._spool.directory
            )
            self._spool_events(events)
        finally:
            with self._changed:
                self._settling -= 1
                self._changed.notify_all()


def _after_fork_in_child() -> None:
    for sender in list(_senders):
        sender._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
