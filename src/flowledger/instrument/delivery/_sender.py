"""The background sender: events leave the process here.

``submit`` appends to a queue bounded in items and bytes and returns at
once. A full queue is not a reason to lose events: it is handed whole to
a second daemon thread, the *spiller*, which writes it to the spool, and
the event starts a fresh queue; the worker replays the spilled file as
soon as it has nothing live to send (only a full or unwritable spool then
drops events, and a run's terminal event is kept back in memory even
then). At most :data:`SPILL_WAITING_MAX` full queues wait for the spiller;
should the spool be slower than the workflow beyond that, new events are
dropped and counted (``dropped_queue_full``, ``dropped_queue_bytes``)
until one has been written, except a run's terminal event: the caller's
thread never writes to disk. One daemon worker,
started on the first event, takes batches off the queue by count, bytes
and age, posts each as gzip-compressed ``{"events": [...]}`` JSON to the
receiver, and retries 5xx, 429 (honouring ``Retry-After``), connection
errors and timeouts with exponential backoff and full jitter, within a
time budget per batch; a 413 splits the batch (:mod:`._post` posts,
:mod:`._backoff` decides when to try again). While the receiver fails, a
queue past its high-water mark is spilled rather than left to fill up. A
batch that cannot be delivered goes to the :class:`~._spool.Spool`;
while the receiver stays down, later batches go straight there and the
receiver is probed now and then. Spooled batches are replayed when a
sender starts, on ``flush()``/``replay()``, and as soon as the receiver
answers again.

``shutdown(timeout_s)`` (also run at exit) sends what it can in the time
given (and replays what this process spilled and has not replayed yet,
unless the receiver is known to be down: then those files, like those of
a replay that failed, stay for the next process), then spools everything
still in memory, queued, waiting to be spilled and in flight, as
one file, so that a normal exit loses nothing and is never held much
longer than ``timeout_s``: the time kept for that write is estimated from
the bytes queued, waiting for the spiller or being spilled, and the write
speed the spool has measured. Only one thread writes at exit: a queue the
spiller has taken but not begun to write is written with the rest, and a
write it has begun is waited for first, for what remains of ``timeout_s``
(or, when longer, the time that write was estimated to need). A forked
child starts with a fresh queue, worker and HTTP client. Nothing here
raises into the caller: internal errors are counted in ``failures`` and
logged once per kind.

A replay that finds batches bound for another destination or API key in
the folder (the endpoint changed, a key was rotated) leaves them, and the
process says so once, with their count and never their destination: else
they would stay there without a word.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from time import monotonic as _monotonic
from typing import Any, ClassVar, Final, NamedTuple

import httpx
from opentelemetry import context as otel_context

from flowledger._exceptions import UsageError
from flowledger._wire import EventKind
from flowledger.instrument._config import Settings
from flowledger.instrument._pending import PendingEvent, stamped
from flowledger.instrument.delivery._backoff import BACKOFF_BASE_S, PROBE_MAX_S, PROBE_MIN_S, RETRY_BUDGET_S, Outage
from flowledger.instrument.delivery._counters import Counters, DropReason
from flowledger.instrument.delivery._otlp_spans import span_from_event
from flowledger.instrument.delivery._post import Delivery
from flowledger.instrument.delivery._span_sender import SpanSender
from flowledger.instrument.delivery._spool import Spool, destination_tag
from flowledger.instrument.delivery._transport import untraced
from flowledger.instrument.delivery._wait import ReentrantEvent, wait_s

__all__ = ["DropReason", "Sender"]

HIGH_WATER_FRACTION: Final = 0.5
"""While the receiver fails, a queue this full (of its items or bytes) is spilled instead of waiting."""
TERMINAL_KINDS: Final = frozenset({EventKind.RUN_FINISHED.value, EventKind.RUN_SAMPLED_OUT.value})
"""Events that end a run: kept in memory, not dropped, when a spill finds the spool full or unwritable."""
TERMINAL_RESERVE_ITEMS: Final = 1000
"""How far past ``queue_max_items`` terminal events may be kept in the queue (a failed spill, a spiller behind)."""
SPILL_WAITING_MAX: Final = 2
"""How many full queues may wait for the spiller (besides the one it writes); their bytes are bounded alike."""
SPILL_CHUNK_ITEMS: Final = 512
"""The spiller writes a queue's events out this many at a time, checking that shutdown has not taken it over."""
KEPT_EVENT_BYTES: Final = 1024
"""The size counted for a terminal event put back into the queue (it is written out already)."""
IDLE_WAIT_S: Final = 1.0
"""With nothing queued the worker looks round this often (a new event wakes it at once)."""
SPOOL_RESERVE_S: Final = 0.03
"""Part of the shutdown budget kept for the file system's part of the spool write, besides encoding."""
SETTLE_WAIT_S: Final = 1.0
"""At shutdown, the longest wait for a spool write already begun (less when the timeout or its estimate is less)."""
WORKER_JOIN_S: Final = 0.01


_senders: weakref.WeakSet[Sender] = weakref.WeakSet()
_log: Final = logging.getLogger("flowledger")
_BOUND_ELSEWHERE_UNSAID: Final = threading.Lock()
"""Taken, never released, by the first sender of the process to log batches bound elsewhere: once per process, as
a reconfigured SDK starts new senders on the same folder (non-blocking: no sender ever waits on it)."""
_Entry = tuple[dict[str, Any] | PendingEvent, int, float]
"""A queued event: the event, its estimated size in bytes, and when it was queued."""


class _Tally(NamedTuple):
    """What flush and shutdown compare (see ``Sender._tally``)."""

    dropped: int
    rejected: int
    """Refused by the receiver: they reached it and will never be stored."""
    unsent: int
    """Spooled and not replayed since (only replays of files this process spilled count)."""

    def nothing_lost_since(self, before: _Tally) -> bool:
        """No event dropped or refused since ``before``, and none left in the spool that was not there then."""
        return self.dropped == before.dropped and self.rejected == before.rejected and self.unsent <= before.unsent


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
        self._spool = Spool(
            spool_dir or settings.spool_dir, settings.spool_max_bytes, tag=destination_tag(self._destination())
        )
        self._spans = SpanSender(settings, transport=transport) if export_spans else None
        self._reset()
        _senders.add(self)

    def _reset(self) -> None:
        self._lock = (
            threading.RLock()
        )  # re-entrant: a signal handler may submit while the thread it interrupted holds it
        self._changed = threading.Condition(self._lock)
        self._wake = ReentrantEvent()  # set by submit, which a signal handler may call while submit sets it
        self._spill_wake = ReentrantEvent()
        """Set when a full queue (or one past its high-water mark while the receiver fails) awaits the spiller."""
        self._stop = threading.Event()
        self._shutdown_lock = threading.Lock()
        self._queue: deque[_Entry] = deque()
        self._queued_bytes = 0
        self._overflow: deque[tuple[deque[_Entry], int]] = deque()
        """Queues taken off whole (with their bytes), waiting for the spiller; at most ``SPILL_WAITING_MAX``."""
        self._overflow_bytes = 0
        self._spilling: deque[_Entry] | None = None
        """The queue the spiller is writing out; shutdown takes it over until the spiller begins the file."""
        self._spilling_bytes = 0
        self._writing_bytes = 0
        """Bytes of the spill file being written, and until when it should take (by the measured speed)."""
        self._writing_until = 0.0
        self._spiller: threading.Thread | None = None
        self._spills = 0
        """Spool files this process has spilled: a replay that began before the last one goes round again."""
        self._spilled: dict[str, int] = {}
        """Spool files this process spilled and has not replayed yet, with their number of events."""
        self._spill_settled = 0
        """Events of files this process spilled that were since replayed (or moved to a file it wrote again)."""
        self._replay_round = 0
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
        self._rejected_flushed = 0
        """The ``rejected`` count the last flush answered for: the next reports refusals since (see flush)."""

    def _reset_after_fork(self) -> None:
        self._reset()
        self._spool.reset_after_fork()
        if self._spans is not None:
            self._spans.reset_after_fork()

    # --- the EventSink protocol ----------------------------------------

    def submit(self, event: dict[str, Any] | PendingEvent, size: int) -> None:
        """Queue one event (a dict, or a pending one the worker writes out). O(1), never blocks, never raises.

        A full queue is handed to the spiller (the spool), and the event starts a fresh queue.
        """
        try:
            spill = False
            reason: DropReason | None = None
            with self._lock:
                count = len(self._queue)
                queued_bytes = self._queued_bytes + size
                if self._closed:
                    reason = DropReason.CLOSED
                elif count >= self._max_items or queued_bytes > self._max_bytes:
                    if self._hand_over_queue():
                        spill, count, queued_bytes = True, 0, size
                    elif not (_ends_run(event) and count < self._max_items + TERMINAL_RESERVE_ITEMS):
                        # The spiller is behind (a spool slower than the workflow): drop, never write here.
                        reason = DropReason.QUEUE_FULL if count >= self._max_items else DropReason.QUEUE_BYTES
                if reason is None:
                    self._queue.append((event, size, _monotonic()))
                    self._queued_bytes = queued_bytes
                    self._enqueued += 1
                    count += 1
                    # Wake the worker for the first event of a batch (it then waits for the batch's
                    # age) and for a full batch; any other event it picks up with its batch.
                    wake = count == 1 or count >= self._batch_items or queued_bytes >= self._batch_bytes
                    if self._outage.failing and (count >= self._high_items or queued_bytes >= self._high_bytes):
                        spill = self._hand_over_queue() or spill
                    if not (wake or spill) and self._worker is not None:
                        return  # the common case
            if reason is not None:
                self._counters.drop(reason)
                if reason is DropReason.CLOSED:
                    self._log_once("drop-closed", "flowledger: dropping events (%s); see flowledger.stats().", reason)
                else:
                    self._log_once(
                        "drop-spill-behind",
                        "flowledger: the spool %s is written slower than the workflow emits; dropping events "
                        "(%s) until it catches up; see flowledger.stats().",
                        self._spool.directory,
                        reason,
                    )
                return
            if self._worker is None:
                self._start_worker()
            if wake and not self._wake.is_set():  # set: the worker has yet to clear it and take the queue
                self._wake.set()
            if spill:
                self._start_spiller()
                self._spill_wake.set()
        except Exception as exc:
            self._internal_error("submit", exc)

    def _hand_over_queue(self) -> bool:
        """Under the lock, hand the queue whole to the spiller, if fewer than ``SPILL_WAITING_MAX`` wait for it."""
        if not self._queue or len(self._overflow) >= SPILL_WAITING_MAX:
            return False
        if self._overflow and self._overflow_bytes + self._queued_bytes > SPILL_WAITING_MAX * self._max_bytes:
            return False
        self._overflow.append((self._queue, self._queued_bytes))
        self._overflow_bytes += self._queued_bytes
        self._queue, self._queued_bytes = deque(), 0
        return True

    def flush(self, timeout_s: float | None) -> bool:
        """Send what is queued and replay the spool; return whether all of it went out in time.

        ``timeout_s`` None or infinity waits until done; a value that is not a number raises UsageError.

        Drops count during the call; refusals since the previous flush (or the sender's start): the
        receiver's answer refusing an event sent in the background may come before the call, and the
        caller asking whether everything was stored must still learn of it, once.

        Spans (with ``export_spans``) are flushed too, in what remains of
        ``timeout_s``, but they do not change the answer.
        """
        timeout_s = wait_s(timeout_s)  # None and infinity: until done; not a number: UsageError
        try:
            deadline = time.monotonic() + timeout_s
            with self._lock:
                if self._closed:
                    return not self._queue and self._inflight is None
                self._draining += 1
                self._replay_wanted = True
                self._outage.probe_now = True
                before = self._tally()._replace(rejected=self._rejected_flushed)
            try:
                self._start_worker()
                self._wake.set()
                with self._changed:
                    idle = self._changed.wait_for(self._idle, deadline - time.monotonic())
                    after = self._tally()
                    ok = idle and after.nothing_lost_since(before) and not self._outage.failing
                    # answered for: a refusal counted from here on is the next flush's
                    self._rejected_flushed = max(self._rejected_flushed, after.rejected)
                if self._spans is not None:  # best effort: spans never change the answer
                    self._spans.flush(deadline - time.monotonic())
                return ok
            finally:
                with self._lock:
                    self._draining -= 1
        except Exception as exc:
            self._internal_error("flush", exc)
            return False

    def shutdown(self, timeout_s: float | None) -> bool:
        """Send what fits in ``timeout_s``, spool the rest, stop. Idempotent; never raises.

        ``timeout_s`` None or infinity waits until done; a value that is not a number spools at once.
        """
        try:
            try:
                timeout_s = wait_s(timeout_s)
            except UsageError as exc:
                self._internal_error("shutdown", exc)
                timeout_s = 0.0
            if not self._shutdown_lock.acquire(timeout=timeout_s):
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

    def _start_spiller(self) -> None:
        with self._lock:
            if self._spiller is not None or self._closed:
                return
            self._spiller = threading.Thread(target=self._run_spiller, name="flowledger-spill", daemon=True)
            try:
                self._spiller.start()
            except RuntimeError:  # the interpreter is shutting down: shutdown() spools the overflow
                self._spiller = None

    def _idle(self) -> bool:
        return (
            not self._queue
            and not self._overflow
            and self._spilling is None
            and self._inflight is None
            and self._settling == 0
            and not self._replay_wanted
        )

    def _tally(self) -> _Tally:
        """What flush and shutdown compare: events dropped, events refused by the receiver, and events spooled
        and not replayed since.

        Only replays of files this process spilled offset what it spooled: replaying another process's
        files (or this one's after an outage) delivers old events, it does not make up for new ones.
        """
        with self._lock:
            return _Tally(
                self._counters.dropped(), self._counters["rejected"], self._counters["spooled"] - self._spill_settled
            )

    def _shutdown(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + max(timeout_s, 0.0)
        with self._lock:
            before = self._tally()
            worker = self._worker
            self._draining += 1
            # No new replay at exit (the next process does it), but of what this one spilled, unless the
            # receiver is known to be down: then those files stay for the next process too.
            self._replay_wanted = bool(self._spilled) and not self._outage.down
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
            # A queue the spiller took but has not begun to write is written here, with the rest, oldest first.
            waiting = [*((self._spilling,) if self._spilling is not None else ()), *(q for q, _ in self._overflow)]
            queued = [event for entries in (*waiting, self._queue) for event, _, _ in entries]
            self._spilling, self._spilling_bytes = None, 0
            self._overflow.clear()
            self._overflow_bytes = 0
            self._queue.clear()
            self._queued_bytes = 0
            inflight = self._inflight or []
            self._inflight = None
            self._inflight_bytes = 0
        self._stop.set()
        self._wake.set()
        self._spill_wake.set()
        self._settle(deadline)  # one write at a time: a spill file begun is finished first
        leftovers = stamped([*queued, *inflight])
        if leftovers:
            self._spool_events(leftovers)
        self._settle(deadline)
        if self._spans is not None:
            self._spans.shutdown(deadline - time.monotonic())
        if worker is not None and worker.is_alive():
            worker.join(WORKER_JOIN_S)
        return self._tally().nothing_lost_since(before)

    def _settle(self, deadline: float) -> None:
        """Wait for spool writes already begun: until ``deadline``, or, when later, until the spill file being
        written should be done by the measured speed (at most ``SETTLE_WAIT_S``)."""
        with self._changed:
            now = time.monotonic()
            until = max(deadline, min(self._writing_until, now + SETTLE_WAIT_S))
            self._changed.wait_for(lambda: self._settling == 0, max(until - now, 0.0))

    def _spool_reserve_s(self) -> float:
        """Time to keep at exit for spooling what is still in memory: queued, waiting for or with the spiller,
        in flight."""
        with self._lock:
            nbytes = (
                self._queued_bytes
                + self._overflow_bytes
                + self._spilling_bytes
                + self._writing_bytes
                + self._inflight_bytes
            )
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
            with self._lock:
                self._replay_round = self._spills
            self._replay_names = self._spool.ready_names()
            self._say_bound_elsewhere()
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
        with self._lock:
            mine = self._spilled.pop(claim.name, None)  # a file this process spilled
        leftovers = claim.events
        sent_before = self._counters["sent"]  # only this thread adds to "sent"
        try:
            leftovers = self._deliver(claim.events, 0)
        finally:
            if leftovers and len(leftovers) == len(claim.events):
                claim.release()
                if mine is not None:
                    with self._lock:
                        self._spilled[claim.name] = mine
            else:
                if leftovers:
                    self._respool(leftovers, spilled=mine is not None)
                claim.delete()
                if mine is not None:
                    with self._lock:
                        self._spill_settled += mine
        delivered = self._counters["sent"] - sent_before
        if delivered:
            self._counters.add("replayed", delivered)
        if leftovers:
            self._end_replay()

    def _say_bound_elsewhere(self) -> None:
        """Log, once per process, how many batches in the folder wait for another destination or key."""
        waiting = self._spool.bound_elsewhere
        if waiting and _BOUND_ELSEWHERE_UNSAID.acquire(blocking=False):
            try:
                _log.warning(
                    "flowledger: %d spooled batch(es) in %s wait for another destination or API key (the endpoint "
                    "or key changed?): only a process sending there, with that key, replays them.",
                    waiting,
                    self._spool.directory,
                )
            except Exception:
                pass

    def _respool(self, events: list[dict[str, Any]], *, spilled: bool) -> None:
        """Spool what a replay left over, as a file this process spilled when the replayed one was."""
        name = self._spool.batch_name()
        if spilled:
            with self._lock:
                self._spilled[name] = len(events)
        if not self._spool_events(events, name=name) and spilled:
            with self._lock:
                self._spilled.pop(name, None)

    def _end_replay(self) -> None:
        with self._changed:
            self._replay_names = None
            # A file spilled since this round listed the folder is replayed by another round, unless
            # the receiver is down (then the probe replays it).
            self._replay_wanted = self._spills != self._replay_round and not self._outage.down
            self._changed.notify_all()

    # --- the spiller: a full queue goes to the spool ------------------------

    def _backoff_wait(self, delay_s: float) -> bool:
        """Wait before a retry; False when shutdown cut the wait short (the spiller relieves the queue meanwhile)."""
        return not self._stop.wait(delay_s)

    def _run_spiller(self) -> None:
        while not self._stop.is_set():
            self._spill_wake.wait()
            self._spill_wake.clear()
            try:
                while True:
                    with self._lock:
                        if not self._overflow or self._closed:
                            break
                        entries, nbytes = self._overflow.popleft()
                        self._overflow_bytes -= nbytes
                        self._spilling, self._spilling_bytes = entries, nbytes
                        self._settling += 1  # an exit now waits for this write: the events are in no queue
                    try:
                        self._spill(entries, nbytes)
                    finally:
                        # Written (or dropped, or taken over): held here, the queue and its events' payloads would
                        # stay in memory until the next spill, after flush() and the run's end.
                        del entries
            except Exception as exc:
                self._internal_error("spill", exc)

    def _spill(self, entries: deque[_Entry], nbytes: int) -> None:
        """Write a queue taken off whole to the spool; the worker replays it when nothing live waits.

        The caller counted the write in ``_settling``; it is uncounted here. Until the file is begun,
        shutdown may take the queue over (and write it with the rest). When the spool is full or
        unwritable, the run-ending events are put back into the queue rather than dropped; an unexpected
        error drops the queue, counted.
        """
        name: str | None = None
        try:
            events = self._written_out(entries)
            with self._lock:
                if events is None or self._spilling is not entries:
                    return  # shutdown took it over
                self._spilling, self._spilling_bytes = None, 0
                self._writing_bytes = nbytes
                self._writing_until = time.monotonic() + SPOOL_RESERVE_S + self._spool.estimated_write_s(nbytes)
                failing = self._outage.failing
                name = self._spool.batch_name()
                self._spilled[name] = len(events)  # before the file appears: a replay may take it at once
            if failing:
                self._log_once(
                    "high-water",
                    "flowledger: the receiver is failing; spooling the queue to %s.",
                    self._spool.directory,
                )
            else:
                self._log_once(
                    "spill",
                    "flowledger: events come faster than the receiver takes them; spilling to %s, sent from there.",
                    self._spool.directory,
                )
            spill_name, name = name, None  # from here on _spool_events counts what it could not write
            written = self._spool_events(events, keep=TERMINAL_KINDS, name=spill_name)
            with self._changed:
                if written:
                    self._spills += 1
                    if not self._outage.down:
                        self._replay_wanted = True
                else:
                    self._spilled.pop(spill_name, None)
            if written:
                self._wake.set()
        except Exception as exc:
            self._internal_error("spill", exc)
            with self._lock:
                lost = self._spilling is entries or name is not None  # not taken over by shutdown
                if name is not None:
                    self._spilled.pop(name, None)
            if lost:
                self._drop(DropReason.SPOOL_ERROR, len(entries))
        finally:
            with self._changed:
                if self._spilling is entries:
                    self._spilling, self._spilling_bytes = None, 0
                self._writing_bytes = 0
                self._writing_until = 0.0
                self._settling -= 1
                self._changed.notify_all()

    def _written_out(self, entries: deque[_Entry]) -> list[dict[str, Any]] | None:
        """The queue's events as dicts, made a chunk at a time; None once shutdown has taken the queue over."""
        pending = [event for event, _, _ in entries]
        events: list[dict[str, Any]] = []
        for at in range(0, len(pending), SPILL_CHUNK_ITEMS):
            if self._spilling is not entries:
                return None
            events += stamped(pending[at : at + SPILL_CHUNK_ITEMS])
        return events

    def _keep(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Put run-ending events a failed spill could not write back into the queue; return those with no room."""
        now = _monotonic()
        with self._lock:
            room = 0 if self._closed else max(self._max_items + TERMINAL_RESERVE_ITEMS - len(self._queue), 0)
            kept, lost = events[:room], events[room:]
            for event in kept:
                self._queue.append((event, KEPT_EVENT_BYTES, now))
            self._queued_bytes += KEPT_EVENT_BYTES * len(kept)
        if kept:
            self._wake.set()
        return lost


def _ends_run(event: dict[str, Any] | PendingEvent) -> bool:
    """Whether the event ends a run (``TERMINAL_KINDS``)."""
    kind = event.kind if isinstance(event, PendingEvent) else event.get("kind")
    return kind in TERMINAL_KINDS


def _after_fork_in_child() -> None:
    for sender in list(_senders):
        sender._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
