"""One batch to the receiver: encode, post, retry within the budget, split on 413, count the answer.

:class:`Delivery` is the part of the :class:`~._sender.Sender` that talks to
the receiver. It posts a batch (gzip-compressed ``{"events": [...]}``), in
pieces of at most ``batch_max_items``; retries 5xx, 429 (honouring
``Retry-After``), connection errors and timeouts as :mod:`._backoff` allows;
splits a batch the receiver refuses as too large (413) in halves and sets a
single event still too large aside on disk; counts what the receiver
accepted and rejected; and hands what could not be delivered to the spool,
counting what even the spool could not take. The receiver's health
(:class:`~._backoff.Outage`) decides whether a batch is tried at all while
the receiver is down.

The state it works on (lock, counters, outage, spool, HTTP client) belongs
to the sender, which also decides how a retry waits (:meth:`_backoff_wait`).
"""

from __future__ import annotations

import enum
import threading
import time
from typing import Any, ClassVar, Final

import httpx

from flowledger._apikey import api_key_problem
from flowledger._url import masked
from flowledger.instrument._config import Settings
from flowledger.instrument.delivery._backoff import Outage, RetryBudget
from flowledger.instrument.delivery._counters import Counters, DropReason
from flowledger.instrument.delivery._failure import described
from flowledger.instrument.delivery._spool import Destination, Spool, SpoolResult, encodable, encode_batch
from flowledger.instrument.delivery._transport import gzip_body, make_client, parse_retry_after

__all__ = ["REJECTION_REASONS_LOGGED", "Delivery", "PostOutcome"]

REJECTION_REASONS_LOGGED: Final = 10
"""Different reasons for rejected events a process logs (each once); the ``rejected`` counter counts them all."""
_REASON_CHARS: Final = 300
_UNKNOWN_TO_RECEIVER: Final = ("is not one of", "Additional properties are not allowed")
"""What a receiver's validation says of an event kind or a field it does not know."""
_OLDER_RECEIVER_HINT: Final = (
    " (a receiver older than this SDK refuses kinds and fields it does not know yet: upgrade the receiver, "
    "or these events go on being rejected)"
)


class PostOutcome(enum.Enum):
    """What became of one post of a batch."""

    DELIVERED = "delivered"
    TOO_LARGE = "too_large"
    FAILED = "failed"
    """The receiver is unreachable, failing, or refused the request (other 4xx)."""


class Delivery:
    """Posting batches to the receiver; the base of :class:`~._sender.Sender`, which owns the state below."""

    retry_budget_s: ClassVar[float]
    _settings: Settings
    _transport: httpx.BaseTransport | None
    _client: httpx.Client | None
    _batch_items: int
    _lock: threading.RLock
    _changed: threading.Condition
    _outage: Outage
    _counters: Counters
    _spool: Spool
    _replay_wanted: bool

    def _backoff_wait(self, delay_s: float) -> bool:  # pragma: no cover - the Sender's
        """Wait before a retry; False when shutdown cut the wait short."""
        raise NotImplementedError

    def _deliver(self, events: list[dict[str, Any]], retries: int) -> list[dict[str, Any]]:
        """Post events in batches of at most ``batch_max_items``, splitting on 413; return what was not delivered."""
        step = self._batch_items
        pending = [events[at : at + step] for at in range(0, len(events), step)][::-1]
        leftovers: list[dict[str, Any]] = []
        while pending:
            part = pending.pop()
            body, part = self._encode(part)
            if not part:
                continue
            outcome = self._post(body, part, retries)
            if outcome is PostOutcome.TOO_LARGE:
                if len(part) == 1:
                    self._set_aside(part[0])
                else:
                    half = len(part) // 2
                    pending += [part[half:], part[:half]]
            elif outcome is PostOutcome.FAILED:
                leftovers.extend(part)
                for rest in pending:
                    leftovers.extend(rest)
                break
        return leftovers

    def _encode(self, events: list[dict[str, Any]]) -> tuple[bytes, list[dict[str, Any]]]:
        try:
            started = time.monotonic()
            text = encode_batch(events)
            body = gzip_body(text)
            self._spool.observe_write(len(text), time.monotonic() - started)  # what a spool write would cost
            return body, events
        except (TypeError, ValueError):
            kept = self._cleaned(events)
            return (gzip_body(encode_batch(kept)) if kept else b""), kept

    def _cleaned(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``events`` made JSON-safe (:func:`~._spool.encodable`); one that cannot be is dropped and counted."""
        kept = []
        for event in events:
            cleaned = encodable(event)
            if cleaned is None:
                self._drop(DropReason.UNSERIALIZABLE, 1)
            else:
                kept.append(cleaned)
        return kept

    def _post(self, body: bytes, events: list[dict[str, Any]], retries: int) -> PostOutcome:
        with self._lock:
            down = self._outage.down
            if down and not self._outage.probe_due(time.monotonic()):
                return PostOutcome.FAILED
        budget = RetryBudget(0 if down else retries, self.retry_budget_s)
        settings = self._settings
        url = self._url()
        attempt = 0
        while True:
            retry_after_s: float | None = None
            refused = False
            started = time.monotonic()
            try:
                response = self._http().post(
                    url, content=body, timeout=budget.attempt_timeout_s(settings.request_timeout_s)
                )
            except httpx.HTTPError as exc:
                refused = isinstance(exc, httpx.ConnectError)
                self._log_once(
                    f"transport-{type(exc).__name__}", "flowledger: cannot reach %s: %s", masked(url), described(exc)
                )
            else:
                status = response.status_code
                if response.is_success:
                    self._accepted(events, response)
                    return PostOutcome.DELIVERED
                if status == 413:
                    return PostOutcome.TOO_LARGE
                self._log_once(
                    f"status-{status}", "flowledger: %s answered %d: %s", masked(url), status, response.text[:200]
                )
                if status != 429 and status < 500:
                    self._mark_down()
                    return PostOutcome.FAILED  # not worth retrying: spooled for a fixed receiver or key
                retry_after_s = parse_retry_after(response.headers.get("Retry-After")) if status == 429 else None
            budget.spend(time.monotonic() - started)
            with self._changed:
                self._outage.attempt_failed(refused=refused)  # an exit stops waiting for a refusing receiver
                self._changed.notify_all()
            wait_s = budget.next_wait_s(attempt, retry_after_s)
            if wait_s is None or not self._backoff_wait(wait_s):
                break
            attempt += 1
            self._counters.add("retries")
        self._mark_down(retry_after_s or 0.0)
        return PostOutcome.FAILED

    def _url(self) -> str:
        """Where batches are posted."""
        return self._settings.events_url

    def _destination(self) -> Destination | None:
        """Where this sink's batches are bound, with the credentials they go with (the spool's tag is its digest):
        a batch spooled here is replayed only by a sink of the same destination."""
        return Destination(self._settings.events_url, self._settings.api_key or "")

    def _http(self) -> httpx.Client:
        if self._client is None:
            headers: list[tuple[str, str]] = []
            key = self._settings.api_key
            if (
                key and api_key_problem(key, origin="api_key") is None
            ):  # settings built without validation: never send (or echo) it
                headers.append(("Authorization", f"Bearer {key}"))
            self._client = make_client(
                url=self._settings.events_url,
                timeout_s=self._settings.request_timeout_s,
                transport=self._transport,
                headers=headers,
            )
        return self._client

    def _rejected(self, response: httpx.Response) -> list[Any]:
        """What a 2xx answer lists as rejected (the receiver's ``rejected``)."""
        try:
            answer = response.json()
            if isinstance(answer, dict) and isinstance(answer.get("rejected"), list):
                return list(answer["rejected"])
        except ValueError:
            pass
        return []

    def _accepted(self, events: list[dict[str, Any]], response: httpx.Response) -> None:
        rejected = self._rejected(response)[: len(events)]
        self._delivered(len(events) - len(rejected))
        self._counters.add("rejected", len(rejected))
        if rejected:
            self._log_rejections(rejected)

    def _log_rejections(self, rejected: list[Any]) -> None:
        """Log each reason the receiver gave once per process (the first :data:`REJECTION_REASONS_LOGGED`), with a
        hint when the reason is what a receiver older than this SDK says of a kind or field it does not know."""
        reasons: dict[str, int] = {}
        for item in rejected:
            error = item.get("error") if isinstance(item, dict) else None
            reason = str(error)[:_REASON_CHARS] if error is not None else repr(item)[:_REASON_CHARS]
            reasons[reason] = reasons.get(reason, 0) + 1
        for reason, count in reasons.items():
            if not self._counters.first_of("rejected", reason, limit=REJECTION_REASONS_LOGGED):
                continue
            hint = _OLDER_RECEIVER_HINT if any(sign in reason for sign in _UNKNOWN_TO_RECEIVER) else ""
            self._log_once(
                f"rejected:{reason}", "flowledger: the receiver rejected %d event(s): %s%s", count, reason, hint
            )

    def _delivered(self, count: int) -> None:
        """Count events delivered; the first delivery after an outage ends it and starts a replay."""
        self._counters.add("sent", count)
        with self._changed:
            if self._outage.recovered():
                self._replay_wanted = True
            self._changed.notify_all()

    def _mark_down(self, at_least_s: float = 0.0) -> None:
        with self._changed:
            self._outage.went_down(time.monotonic(), at_least_s)
            self._changed.notify_all()

    # --- spool -----------------------------------------------------------

    def _spool_events(
        self, events: list[dict[str, Any]], *, keep: frozenset[str] = frozenset(), name: str | None = None
    ) -> bool:
        """Write events to the spool as one file (replay posts it in batches); return whether it was written.

        ``name`` names the file (see :func:`~._spool.new_batch_name`); by default a fresh one.

        When the spool is full or unwritable, events whose kind is in ``keep`` go to :meth:`_keep` (the
        sender puts them back into its queue) and the rest are dropped and counted.
        """
        if not events:
            return True
        try:
            result = self._spool.write(events, name=name)
            if result is SpoolResult.UNENCODABLE:  # a queue or batch taken before it was encoded: cleaned here
                events = self._cleaned(events)
                result = self._spool.write(events, name=name) if events else SpoolResult.WRITTEN
        except Exception as exc:
            self._internal_error("spool", exc)
            result = SpoolResult.ERROR
        if result is SpoolResult.WRITTEN:
            self._counters.add("spooled", len(events))
            return True
        lost = len(events)
        if keep:
            kept = [event for event in events if event.get("kind") in keep]
            lost -= len(kept) - len(self._keep(kept))
        if result is SpoolResult.FULL:
            self._drop(DropReason.SPOOL_FULL, lost)
            self._log_once("spool-full", "flowledger: the spool %s is full; dropping events.", self._spool.directory)
        else:
            self._drop(DropReason.SPOOL_ERROR, lost)
            self._log_once(
                "spool-error", "flowledger: cannot write the spool %s; dropping events.", self._spool.directory
            )
        return False

    def _keep(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Hold events the spool could not take in memory; return those there is no room for."""
        return events

    def _set_aside(self, event: dict[str, Any]) -> None:
        self._drop(DropReason.TOO_LARGE, 1)
        self._log_once(
            "too-large",
            "flowledger: the receiver refused an event as too large; kept in %s/rejected.",
            self._spool.directory,
        )
        try:
            self._spool.set_aside(event)
        except Exception as exc:
            self._internal_error("set_aside", exc)

    # --- bookkeeping -----------------------------------------------------

    def _drop(self, reason: DropReason, count: int) -> None:
        self._counters.drop(reason, count)

    def _internal_error(self, kind: str, exc: BaseException) -> None:
        try:
            self._counters.internal_error(kind, exc)
        except Exception:
            pass

    def _log_once(self, kind: str, message: str, *args: object) -> None:
        self._counters.log_once(kind, message, *args)
