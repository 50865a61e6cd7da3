"""The single writer task: the only code that writes to the store.

Ingest requests hand their valid events to :meth:`Writer.submit` and await
the outcome. The writer takes the first waiting request and every request
queued behind it (up to ``commit_max_events``) and commits them in one
transaction, so concurrent clients share commits instead of fighting for a
lock. The queue is bounded: when it is full, :meth:`Writer.submit` raises
:class:`WriteQueueFull` and the route answers 503 with Retry-After.

One client cannot fail another's commit: when a commit group fails for
what its events hold (:class:`UnstorableError`, or any error that is not
the store's own failure), the writer commits each request of the group on
its own, then each event of a failing request on its own; an event that
still fails alone is answered ``EventOutcome.UNSTORABLE`` with its reason,
and every other event is stored. A :class:`StoreError` (locked, disk full)
fails the group as before: the requests are answered 503 and retried.
Maintenance work (sweeps, rebuilds) goes through the same queue with
:meth:`Writer.call`, so it never overlaps a commit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from flowledger._exceptions import StoreError, UnstorableError, WriteQueueFull
from flowledger.receiver._metrics import Metrics
from flowledger.receiver.store._event import PreparedEvent
from flowledger.receiver.store._protocol import EventOutcome, Store

__all__ = ["Writer"]

_log = logging.getLogger("flowledger.receiver")
T = TypeVar("T")
Outcomes = list[tuple[EventOutcome, str | None]]
_STOP: Final = object()


@dataclass(slots=True)
class _Append:
    events: Sequence[PreparedEvent]
    future: asyncio.Future[Outcomes]


@dataclass(slots=True)
class _Call:
    work: Callable[[], Awaitable[Any]]
    future: asyncio.Future[Any]


def _settle(future: asyncio.Future[Any], result: Any = None, error: BaseException | None = None) -> None:
    if future.done():  # the client went away; nobody waits for this answer
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class Writer:
    """Owns the store's write side; start it inside the app's lifespan."""

    def __init__(self, store: Store, metrics: Metrics, *, max_requests: int, commit_max_events: int) -> None:
        self._store = store
        self._metrics = metrics
        self._queue: asyncio.Queue[_Append | _Call | object] = asyncio.Queue(maxsize=max_requests)
        self._commit_max_events = commit_max_events
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def depth(self) -> int:
        """Requests waiting for the writer."""
        return self._queue.qsize()

    def start(self) -> None:
        """Start the writer task on the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="flowledger-writer")

    async def stop(self) -> None:
        """Finish what is queued, then stop; idempotent."""
        if self._task is None or self._stopping:
            return
        self._stopping = True
        await self._queue.put(_STOP)
        await self._task
        self._task = None

    def submit(self, events: Sequence[PreparedEvent]) -> asyncio.Future[Outcomes]:
        """Queue events for the next commit; raises WriteQueueFull when the queue is full."""
        if self._stopping:
            raise WriteQueueFull("the receiver is shutting down")
        future: asyncio.Future[Outcomes] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Append(events, future))
        except asyncio.QueueFull:
            self._metrics.queue_full += 1
            raise WriteQueueFull(f"{self._queue.maxsize} requests are waiting to be written") from None
        return future

    async def call(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work`` on the writer, between commits, and return its result."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Call(work, future))
        return await future

    async def _run(self) -> None:
        pending: list[_Append | _Call | object] = []
        while True:
            item = pending.pop(0) if pending else await self._queue.get()
            if item is _STOP:
                return
            if isinstance(item, _Call):
                try:
                    _settle(item.future, await item.work())
                except Exception as exc:  # handed to the caller
                    _settle(item.future, error=exc)
                continue
            assert isinstance(item, _Append)
            group = [item]
            count = len(item.events)
            while count < self._commit_max_events and not self._queue.empty():
                following = self._queue.get_nowait()
                if not isinstance(following, _Append):
                    pending.append(following)
                    break
                group.append(following)
                count += len(following.events)
            await self._commit(group, count)

    async def _commit(self, group: list[_Append], count: int) -> None:
        events = [e for job in group for e in job.events] if len(group) > 1 else list(group[0].events)
        try:
            outcomes = await self._append(events)
        except UnstorableError as exc:  # what the events hold: store each request, then each event, on its own
            _log.warning("commit of %d events failed (%s); storing its requests one by one", count, exc)
            for job in group:
                await self._commit_alone(job, whole_first=len(group) > 1)
            return
        except StoreError as exc:
            _log.error("commit of %d events failed: %s", count, exc)
            for job in group:
                _settle(job.future, error=exc)
            return
        except Exception:
            _log.exception("commit of %d events failed unexpectedly; storing its requests one by one", count)
            for job in group:
                await self._commit_alone(job, whole_first=len(group) > 1)
            return
        offset = 0
        for job in group:
            size = len(job.events)
            _settle(job.future, outcomes[offset : offset + size])
            offset += size

    async def _append(self, events: list[PreparedEvent]) -> Outcomes:
        """One transaction; UnstorableError (or anything unexpected) says the events are the cause."""
        started = time.perf_counter()
        outcomes = await self._store.append(events)
        self._metrics.observe_commit(time.perf_counter() - started, len(events))
        return outcomes

    async def _commit_alone(self, job: _Append, *, whole_first: bool) -> None:
        """Commit one request on its own (``whole_first``), then, if that fails for its events, event by event."""
        events = list(job.events)
        if whole_first:
            try:
                _settle(job.future, await self._append(events))
                return
            except UnstorableError:
                pass
            except StoreError as exc:
                _settle(job.future, error=exc)
                return
            except Exception:
                _log.exception("storing a request of %d events failed unexpectedly", len(events))
        outcomes: Outcomes = []
        for event in events:
            try:
                outcomes.extend(await self._append([event]))
            except UnstorableError as exc:
                outcomes.append((EventOutcome.UNSTORABLE, _unstorable_reason(exc)))
            except StoreError as exc:
                _settle(job.future, error=exc)
                return
            except Exception as exc:
                _log.exception("storing event %s failed unexpectedly", event.event_id)
                outcomes.append((EventOutcome.UNSTORABLE, _unstorable_reason(exc)))
        _settle(job.future, outcomes)


def _unstorable_reason(exc: BaseException) -> str:
    cause = exc.__cause__ if isinstance(exc, UnstorableError) and exc.__cause__ is not None else exc
    return f"event holds a value the store cannot keep ({cause}); it was not stored"
