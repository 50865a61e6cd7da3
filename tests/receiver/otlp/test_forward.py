"""Forwarding OTLP bodies to an upstream endpoint: end to end through a second receiver, queue bounds, retries."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from flowledger._exceptions import ConfigError
from flowledger.receiver._config import ReceiverConfig, config_from_env, parse_forward_headers
from flowledger.receiver.otlp._decode import OtlpSignal
from flowledger.receiver.otlp._forward import Forwarder
from tests.otel._support import LiveReceiver, free_port, otlp_json, receiver_running, stock_provider


def _spans() -> tuple[list[ReadableSpan], str]:
    provider, memory = stock_provider("forwarded-app")
    tracer = provider.get_tracer("tests.otel")
    with tracer.start_as_current_span("outer"), tracer.start_as_current_span("inner"):
        pass
    spans = list(memory.get_finished_spans())
    provider.shutdown()
    return spans, f"{spans[0].context.trace_id:032x}"


def test_the_upstream_receives_what_the_receiver_accepted(receiver: LiveReceiver, tmp_path: Path) -> None:
    """With forwarding on, protobuf and JSON exports reach the upstream with their parent links intact."""
    config = ReceiverConfig(db_path=tmp_path / "front.db", sweep_interval_s=0, forward_endpoint=receiver.url)
    with receiver_running(config) as front:
        proto_spans, proto_trace = _spans()
        exporter = OTLPSpanExporter(endpoint=f"{front.url}/v1/traces")
        assert exporter.export(proto_spans) is SpanExportResult.SUCCESS
        exporter.shutdown()  # type: ignore[no-untyped-call]  # the OTel SDK leaves it unannotated
        json_spans, json_trace = _spans()
        body = json.dumps(otlp_json(json_spans)).encode()
        assert front.post("/v1/traces", body, "application/json").status_code == 200
        logs = {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": "hello"}}]}]}]}
        assert front.post("/v1/logs", json.dumps(logs).encode(), "application/json").status_code == 200
        assert front.post("/v1/metrics", b"{}", "application/json").status_code == 200  # empty: nothing to forward
        stats = front.wait_for("/api/otlp/stats", lambda d: d["forwarding"]["sent"] == 3)
        assert front.trace(proto_trace)["span_count"] == 2
    forwarding = stats["forwarding"]
    assert (forwarding["failed"], forwarding["dropped"], forwarding["items_sent"]) == (0, 0, 5)
    for trace_id in (proto_trace, json_trace):
        doc = receiver.trace(trace_id)
        names = {span["name"]: span for span in doc["spans"]}
        assert names["inner"]["parent_span_id"] == names["outer"]["span_id"]
        assert names["outer"]["service_name"] == "forwarded-app"


def test_an_unreachable_upstream_never_fails_ingest(tmp_path: Path) -> None:
    """Spans are stored and answered 200 while the upstream is down; the failed forwards are counted."""
    dead = f"http://127.0.0.1:{free_port()}"
    config = ReceiverConfig(db_path=tmp_path / "front.db", sweep_interval_s=0, forward_endpoint=dead)
    with receiver_running(config) as front:
        spans, trace_id = _spans()
        body = json.dumps(otlp_json(spans)).encode()
        assert front.post("/v1/traces", body, "application/json").status_code == 200
        assert front.trace(trace_id)["span_count"] == 2
        stats = front.wait_for("/api/otlp/stats", lambda d: d["forwarding"]["failed"] == 1)
    assert stats["forwarding"]["retried"] == 2
    assert stats["forwarding"]["items_failed"] == 2


def test_forwarding_is_off_by_default(receiver: LiveReceiver) -> None:
    """Without an upstream the stats say forwarding is null."""
    assert receiver.get("/api/otlp/stats").json()["forwarding"] is None


def _run(coro: Coroutine[Any, Any, Forwarder]) -> Forwarder:
    return asyncio.run(coro)


def test_a_full_queue_drops_and_counts() -> None:
    """Offers beyond the queue bound are refused at once and counted, with the items they held."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    async def scenario() -> Forwarder:
        forwarder = Forwarder(
            "http://upstream.test", max_requests=2, timeout_s=1, transport=httpx.MockTransport(answer)
        )
        results = [forwarder.offer(OtlpSignal.TRACES, b"{}", "application/json", items=10) for _ in range(5)]
        assert results == [True, True, False, False, False]
        assert await forwarder.flush(5.0)
        await forwarder.stop(1.0)
        return forwarder

    forwarder = _run(scenario())
    stats = forwarder.stats
    assert (stats.sent, stats.dropped, stats.items_dropped, stats.items_sent) == (2, 3, 30, 20)
    assert len(seen) == 2


def test_forwarded_requests_keep_type_and_headers_and_are_gzipped() -> None:
    """A forwarded body goes to <endpoint>/v1/<signal>, gzipped, in its content type, with the extra headers."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    async def scenario() -> Forwarder:
        forwarder = Forwarder(
            "http://upstream.test/base/",
            max_requests=4,
            timeout_s=1,
            headers={"x-api-key": "k1"},
            transport=httpx.MockTransport(answer),
        )
        forwarder.offer(OtlpSignal.METRICS, b"\x0a\x00", "application/x-protobuf", items=1)
        await forwarder.stop(5.0)
        return forwarder

    _run(scenario())
    (request,) = seen
    assert str(request.url) == "http://upstream.test/base/v1/metrics"
    assert request.headers["content-type"] == "application/x-protobuf"
    assert request.headers["content-encoding"] == "gzip"
    assert request.headers["x-api-key"] == "k1"
    assert gzip.decompress(request.content) == b"\x0a\x00"


@pytest.mark.parametrize(("statuses", "sent", "retried"), [((503, 200), 1, 1), ((400,), 0, 0), ((502, 502, 502), 0, 2)])
def test_retries_only_what_may_succeed_later(statuses: tuple[int, ...], sent: int, retried: int) -> None:
    """503/502/429 are retried (Retry-After honoured), other refusals are failed at once."""
    answers = iter(statuses)

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(next(answers), headers={"retry-after": "0"})

    async def scenario() -> Forwarder:
        transport = httpx.MockTransport(answer)
        forwarder = Forwarder("http://upstream.test", max_requests=4, timeout_s=1, transport=transport)
        forwarder.offer(OtlpSignal.TRACES, b"{}", "application/json", items=1)
        assert await forwarder.flush(10.0)
        await forwarder.stop(1.0)
        return forwarder

    forwarder = _run(scenario())
    assert (forwarder.stats.sent, forwarder.stats.failed, forwarder.stats.retried) == (sent, 1 - sent, retried)


def test_stop_counts_what_it_could_not_send() -> None:
    """Bodies in flight or still queued when stop's time runs out are counted as dropped."""
    release = asyncio.Event()

    async def scenario() -> Forwarder:
        async def answer(request: httpx.Request) -> httpx.Response:
            await release.wait()
            return httpx.Response(200)

        transport = httpx.MockTransport(answer)
        forwarder = Forwarder("http://upstream.test", max_requests=4, timeout_s=5, transport=transport)
        for _ in range(3):
            forwarder.offer(OtlpSignal.TRACES, b"{}", "application/json", items=2)
        await asyncio.sleep(0)
        await forwarder.stop(0.05)
        assert not forwarder.offer(OtlpSignal.TRACES, b"{}", "application/json", items=2)
        return forwarder

    forwarder = _run(scenario())
    assert forwarder.stats.sent == 0
    assert forwarder.stats.dropped == 4  # one in flight and two queued at stop, one offered after it
    assert forwarder.stats.items_dropped == 8


def test_forwarding_settings_come_from_the_environment() -> None:
    """FLOWLEDGER_RECEIVER_FORWARD_* set the upstream, its headers, queue and timeout."""
    config = config_from_env(
        environ={
            "FLOWLEDGER_RECEIVER_FORWARD_ENDPOINT": "http://collector:4318/",
            "FLOWLEDGER_RECEIVER_FORWARD_HEADERS": "x-api-key=abc, x-team = shop",
            "FLOWLEDGER_RECEIVER_FORWARD_QUEUE_MAX_REQUESTS": "7",
            "FLOWLEDGER_RECEIVER_FORWARD_TIMEOUT_S": "2.5",
        }
    )
    assert config.forward_endpoint == "http://collector:4318"
    assert config.forward_headers == (("x-api-key", "abc"), ("x-team", "shop"))
    assert (config.forward_queue_max_requests, config.forward_timeout_s) == (7, 2.5)
    assert config_from_env(environ={}).forward_endpoint is None


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("FLOWLEDGER_RECEIVER_FORWARD_ENDPOINT", "collector:4318", "http:// or https:// base URL"),
        ("FLOWLEDGER_RECEIVER_FORWARD_ENDPOINT", "http://collector:4318/v1/traces", "give the base URL"),
        ("FLOWLEDGER_RECEIVER_FORWARD_HEADERS", "novalue", "name1=value1"),
        ("FLOWLEDGER_RECEIVER_FORWARD_HEADERS", "bad name=x", "is not an HTTP header name"),
        ("FLOWLEDGER_RECEIVER_FORWARD_HEADERS", "x-key=a%0Ab", "holds a control character (a line break, NUL, ...)"),
        ("FLOWLEDGER_RECEIVER_FORWARD_HEADERS", "x-key=%ff", "percent-encoding is not UTF-8"),
        ("FLOWLEDGER_TRACE_URL_TEMPLATE", "http://jaeger:16686/trace/", "no {trace_id} placeholder"),
        ("FLOWLEDGER_TRACE_URL_TEMPLATE", "jaeger/{trace_id}", "http:// or https:// URL"),
    ],
)
def test_bad_settings_are_config_errors(name: str, value: str, needle: str) -> None:
    """A malformed forwarding or trace-link variable is a ConfigError naming the variable."""
    with pytest.raises(ConfigError, match=name) as caught:
        config_from_env(environ={name: value})
    assert needle in str(caught.value)


def test_header_parsing_keeps_equals_signs_in_values() -> None:
    """Only the first '=' splits a header pair (base64 tokens keep their padding)."""
    assert parse_forward_headers("authorization=Basic dXNlcjpwYXNz==") == (("authorization", "Basic dXNlcjpwYXNz=="),)


def test_header_values_are_percent_decoded_as_otel_headers_are() -> None:
    """`Authorization=Basic%20abc` sends `Basic abc`, as OTEL_EXPORTER_OTLP_HEADERS does; a comma can be sent."""
    assert parse_forward_headers("Authorization=Basic%20abc,x-list=a%2Cb") == (
        ("Authorization", "Basic abc"),
        ("x-list", "a,b"),
    )


def test_stop_forwarding_sends_what_is_queued_at_shutdown() -> None:
    """stop_forwarding(app), for the app's shutdown, gives queued bodies their chance, then ends the task."""
    from types import SimpleNamespace

    from flowledger.receiver.otlp._routes import OtlpState, stop_forwarding

    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    async def scenario() -> Forwarder:
        transport = httpx.MockTransport(answer)
        forwarder = Forwarder("http://upstream.test", max_requests=8, timeout_s=1, transport=transport)
        app = SimpleNamespace(state=SimpleNamespace(otlp=OtlpState(forwarder=forwarder)))
        for _ in range(3):
            forwarder.offer(OtlpSignal.LOGS, b"", "application/x-protobuf", items=1)
        await stop_forwarding(app, timeout_s=5.0)
        await stop_forwarding(SimpleNamespace(state=SimpleNamespace()))  # an app that never forwarded
        return forwarder

    forwarder = _run(scenario())
    assert (forwarder.stats.sent, forwarder.stats.dropped, len(seen)) == (3, 0, 3)
