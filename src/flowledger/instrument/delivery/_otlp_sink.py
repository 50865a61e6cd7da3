"""The OTLP sink: runs and node attempts as OpenTelemetry spans, with no receiver.

Each finished run and node attempt becomes one span (failures carry an
``exception`` span event), built by :mod:`._otlp_spans` and encoded as
:mod:`._span_sender` does (``http/protobuf`` by default for an OTLP
backend), posted to the OTLP traces endpoint (``OTEL_EXPORTER_OTLP_*``; the
receiver's ``/v1/traces`` when none is set).

Unlike the receiver sink's span export, which is best effort, here the
spans are the record: this is the :class:`~._sender.Sender` with the traces
endpoint as its destination, so batches are retried with backoff, spooled
(as events, in the sink's own spool folder) while the backend is down, and
replayed when it is back, and an exit is bounded the same way. Events that
give no span (``run_started``, ``node_started``, heartbeats) only feed the
spans that follow (a run's workflow attributes on its nodes' spans) and
count as sent.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from flowledger.instrument._config import Settings
from flowledger.instrument.delivery._otlp_protobuf import encode_export, rejected_spans
from flowledger.instrument.delivery._otlp_spans import RunMemo, span_from_event
from flowledger.instrument.delivery._sender import Sender
from flowledger.instrument.delivery._span_sender import otlp_headers, span_protocol, span_request
from flowledger.instrument.delivery._spool import Destination
from flowledger.instrument.delivery._transport import gzip_body, make_client

__all__ = ["OtlpSender"]


class OtlpSender(Sender):
    """A :class:`Sender` whose destination is an OTLP/HTTP traces endpoint. Implements ``EventSink``."""

    def __init__(
        self, settings: Settings, *, transport: httpx.BaseTransport | None = None, spool_dir: Path | None = None
    ) -> None:
        self.protocol = span_protocol(settings)
        self._runs = RunMemo()
        super().__init__(settings, transport=transport, spool_dir=spool_dir)

    def _url(self) -> str:
        return self._settings.traces_url

    def _destination(self) -> Destination | None:
        """The traces URL and the headers sent with it (an OTLP backend's key): see ``Delivery._destination``."""
        headers = "\n".join(f"{name}={value}" for name, value in otlp_headers(self._settings))
        return Destination(self._settings.traces_url, headers)

    def _encode(self, events: list[dict[str, Any]]) -> tuple[bytes, list[dict[str, Any]]]:
        started = time.monotonic()
        spans: list[dict[str, Any]] = []
        for event in events:
            try:
                span = span_from_event(event, self._runs)
            except Exception as exc:  # a malformed event gives no span; the rest still go
                self._internal_error("span", exc)
                span = None
            if span is not None:
                spans.append(span)
        if not spans:
            self._delivered(len(events))  # nothing to export: they only fed the spans that follow
            return b"", []
        data, _ = encode_export(span_request(self._settings, spans), self.protocol)
        self._spool.observe_write(len(data), time.monotonic() - started)
        return gzip_body(data), events

    def _rejected(self, response: httpx.Response) -> list[Any]:
        count = rejected_spans(response.content, response.headers.get("Content-Type", ""))
        return [{"rejected_spans": count}] * count

    def _http(self) -> httpx.Client:
        if self._client is None:
            self._client = make_client(
                url=self._settings.traces_url,
                timeout_s=self._settings.request_timeout_s,
                transport=self._transport,
                headers=[*otlp_headers(self._settings), ("Content-Type", self.protocol.content_type)],
            )
        return self._client

    def _reset_after_fork(self) -> None:
        super()._reset_after_fork()
        self._runs.reset_after_fork()
