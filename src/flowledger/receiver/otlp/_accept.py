"""Taking one decoded OTLP export request, whatever carried it (OTLP/HTTP or gRPC).

:func:`accept` validates the request's spans, log records or metric points,
stores the valid ones through the single writer, counts what happened and
offers the request to the forwarder. It answers :class:`Accepted` (with the
partial-success count and message) or :class:`Refusal` (an HTTP status the
transport translates: the HTTP routes answer it as is, the gRPC services as
the matching gRPC status code). The OTLP state of one receiver app (counters
and the forwarder) lives on the app, made on first use by :func:`otlp_state_of`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from flowledger._exceptions import StoreError
from flowledger._wire import now_ts
from flowledger.receiver._state import ReceiverState
from flowledger.receiver.otlp._decode import OtlpFormat, OtlpSignal
from flowledger.receiver.otlp._forward import Forwarder
from flowledger.receiver.otlp._logs import logs_from_request
from flowledger.receiver.otlp._metrics import points_from_request
from flowledger.receiver.otlp._salvage import ITEM_NOUNS, Decoded, Unreadable
from flowledger.receiver.otlp._spans import rejection_message, spans_from_request

__all__ = ["STATS_NAMES", "Accepted", "OtlpState", "Refusal", "SignalStats", "accept", "otlp_state_of"]

STATS_NAMES: Final = {
    OtlpSignal.TRACES: "spans",
    OtlpSignal.LOGS: "log_records",
    OtlpSignal.METRICS: "metric_points",
}
"""The key of each signal's counters in ``/api/otlp/stats``."""
BUSY_MESSAGE: Final = "the receiver is busy; retry later"


@dataclass(slots=True)
class SignalStats:
    """What one signal's ingest did since the receiver started (items are spans, log records or data points)."""

    requests: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    refused_requests: int = 0
    """Requests answered 4xx or 5xx (gRPC: an error status)."""

    def add(
        self, *, requests: int = 0, accepted: int = 0, duplicates: int = 0, rejected: int = 0, refused: int = 0
    ) -> None:
        """Add to the counters."""
        self.requests += requests
        self.accepted += accepted
        self.duplicates += duplicates
        self.rejected += rejected
        self.refused_requests += refused

    def as_json(self) -> dict[str, int]:
        """One signal's object of ``/api/otlp/stats``."""
        return {
            "requests": self.requests,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "refused_requests": self.refused_requests,
        }


@dataclass(slots=True)
class OtlpState:
    """The OTLP side of one receiver app: counters per signal (all, and per API key project) and the forwarder."""

    totals: dict[OtlpSignal, SignalStats] = field(default_factory=lambda: {s: SignalStats() for s in OtlpSignal})
    by_project: dict[tuple[str, OtlpSignal], SignalStats] = field(default_factory=dict)
    forwarder: Forwarder | None = None

    def count(self, signal: OtlpSignal, project: str | None, **deltas: int) -> None:
        """Add to the receiver's counters of ``signal`` and, with API keys on, to the project's."""
        self.totals[signal].add(**deltas)
        if project is not None:
            self.by_project.setdefault((project, signal), SignalStats()).add(**deltas)

    def stats_json(self, project: str | None) -> dict[str, Any]:
        """The counters of every signal, the receiver's or (with API keys on) one project's."""
        return {
            name: (
                self.totals[signal] if project is None else self.by_project.get((project, signal), SignalStats())
            ).as_json()
            for signal, name in STATS_NAMES.items()
        }


def otlp_state_of(app: Any, receiver: ReceiverState) -> OtlpState:
    """The OTLP state of ``app``, made on first use (with the forwarder, if configured)."""
    state: OtlpState | None = getattr(app.state, "otlp", None)
    if state is None:
        config = receiver.config
        forwarder = None
        if config.forward_endpoint:
            forwarder = Forwarder(
                config.forward_endpoint,
                max_requests=config.forward_queue_max_requests,
                timeout_s=config.forward_timeout_s,
                headers=dict(config.forward_headers),
            )
        state = OtlpState(forwarder=forwarder)
        app.state.otlp = state
    return state


@dataclass(frozen=True, slots=True)
class Accepted:
    """The request was taken; ``rejected`` items were refused (the partial success), for ``error_message``."""

    rejected: int = 0
    error_message: str = ""


@dataclass(frozen=True, slots=True)
class Refusal:
    """The request was refused as a whole: an HTTP status, its message, and whether to send Retry-After."""

    status: int
    message: str
    retry: bool = False


def items_of(signal: OtlpSignal, message: Any) -> int:
    """How many spans, log records or metrics an export request holds."""
    if signal is OtlpSignal.TRACES:
        return sum(len(s.spans) for r in message.resource_spans for s in r.scope_spans)
    if signal is OtlpSignal.LOGS:
        return sum(len(s.log_records) for r in message.resource_logs for s in r.scope_logs)
    return sum(len(s.metrics) for r in message.resource_metrics for s in r.scope_metrics)


async def _store(receiver: ReceiverState, decoded: Decoded, project: str | None) -> tuple[int, str, int, int]:
    """Validate and store the request's items: (rejected, message, new, duplicates); StoreError when it failed.
    The items that could not be decoded count as rejected, named first."""
    store, config = receiver.store, receiver.config
    signal, message, lost = decoded.signal, decoded.message, decoded.unreadable
    if signal is OtlpSignal.TRACES:
        spans = spans_from_request(message, project=project, received_at=now_ts(), skip=lost.items)
        new = await receiver.writer.call(lambda: store.store_spans(spans.rows)) if spans.rows else 0
        return (*_with_lost(lost, spans.rejected, spans.problems, ITEM_NOUNS[signal]), new, len(spans.rows) - new)
    if signal is OtlpSignal.LOGS:
        logs = logs_from_request(message, project=project, received_at=now_ts(), skip=lost.items)
        rows, most = logs.rows, config.otlp_log_records_max
        new = await receiver.writer.call(lambda: store.store_logs(rows, max_records=most)) if rows else 0
        return (*_with_lost(lost, logs.rejected, logs.problems, ITEM_NOUNS[signal]), new, len(rows) - new)
    metrics = points_from_request(message, project=project)
    points = metrics.rows
    rejected, text = _with_lost(lost, metrics.rejected, metrics.problems, ITEM_NOUNS[signal])
    if not points:
        return rejected, text, 0, 0
    outcome = await receiver.writer.call(
        lambda: store.store_metric_points(
            points, max_series=config.otlp_metric_series_max, max_points=config.otlp_metric_points_max
        )
    )
    if outcome.over_series_limit:
        rejected += outcome.over_series_limit
        limit = (
            f"{outcome.over_series_limit} data point(s) of new series rejected: the receiver keeps at most "
            f"{config.otlp_metric_series_max} series"
        )
        text = f"{text}; {limit}" if text else limit
    return rejected, text, outcome.stored, outcome.duplicates


def _with_lost(lost: Unreadable, rejected: int, problems: list[str], noun: str) -> tuple[int, str]:
    """The rejected count and partial-success message of a request's items, those it held that could not be
    decoded included (and named first)."""
    total = lost.rejected + rejected
    return total, rejection_message(total, [*lost.problems, *problems], noun)


async def accept(
    app: Any,
    receiver: ReceiverState,
    decoded: Decoded,
    *,
    project: str | None,
    protobuf_body: bytes | None,
) -> Accepted | Refusal:
    """Store (and forward) one decoded export request; see the module's docstring.

    ``protobuf_body`` is the request as received when it was protobuf (forwarded as is, unless part of it could
    not be decoded: then what could is forwarded); None re-encodes it.
    """
    signal = decoded.signal
    state = otlp_state_of(app, receiver)
    if receiver.writer.depth >= receiver.config.write_queue_max_requests:
        state.count(signal, project, refused=1)
        return Refusal(503, BUSY_MESSAGE, retry=True)
    try:
        rejected, error_message, new, duplicates = await _store(receiver, decoded, project)
    except StoreError as exc:
        state.count(signal, project, refused=1)
        return Refusal(503, f"the store could not take the {STATS_NAMES[signal].replace('_', ' ')}: {exc}", True)
    state.count(signal, project, requests=1, accepted=new, duplicates=duplicates, rejected=rejected)
    if state.forwarder is None:
        return Accepted(rejected, error_message)
    message = decoded.readable()
    items = items_of(signal, message)
    if items:  # protobuf upstream: every OTLP/HTTP server takes it, not all take JSON
        if protobuf_body is None or decoded.unreadable.problems:
            protobuf_body = bytes(message.SerializeToString())
        body = protobuf_body
        state.forwarder.offer(signal, body, OtlpFormat.PROTOBUF.value, items=items)
    return Accepted(rejected, error_message)
