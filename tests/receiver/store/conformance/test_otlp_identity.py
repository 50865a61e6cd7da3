"""The Store conformance suite, OTLP values and identities over a real receiver (HTTP and gRPC): integer metric
values kept exactly, and a series or log record found again whatever order its attributes were sent in."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, Final

import grpc
import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExporter
from opentelemetry.sdk.resources import Resource

from flowledger.receiver._config import ReceiverConfig
from tests.otel._support import LiveReceiver, free_port, receiver_running

JSON: Final = "application/json"
PROTOBUF: Final = "application/x-protobuf"
LOGS_METHOD: Final = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
BIG: Final = 2**53 + 1
"""The smallest integer a double cannot hold: 9007199254740993."""


@pytest.fixture
def config(engine_kind: str, receiver_config: ReceiverConfig, request: pytest.FixtureRequest) -> ReceiverConfig:
    """A receiver's config on the engine under test, serving gRPC too."""
    config = replace(receiver_config, grpc_port=free_port())
    if engine_kind == "postgres":
        config = replace(config, db_url=request.getfixturevalue("postgres_url"))
    return config


@pytest.fixture
def live(config: ReceiverConfig) -> Iterator[LiveReceiver]:
    """A real receiver on the engine under test."""
    with receiver_running(config) as receiver:
        yield receiver


def _pairs(items: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    """OTLP JSON key-value pairs, in this order (a list value is a nested key-value list)."""
    out = []
    for key, value in items:
        if isinstance(value, list):
            out.append({"key": key, "value": {"kvlistValue": {"values": _pairs(value)}}})
        elif isinstance(value, int):
            out.append({"key": key, "value": {"intValue": str(value)}})
        else:
            out.append({"key": key, "value": {"stringValue": value}})
    return out


def _gauge(name: str, points: list[dict[str, Any]], resource: list[tuple[str, Any]]) -> bytes:
    body = {
        "resourceMetrics": [
            {
                "resource": {"attributes": _pairs(resource)},
                "scopeMetrics": [
                    {"scope": {"name": "ord"}, "metrics": [{"name": name, "gauge": {"dataPoints": points}}]}
                ],
            }
        ]
    }
    return json.dumps(body).encode()


def _points(live: LiveReceiver, name: str) -> list[list[dict[str, Any]]]:
    answer = live.get("/api/otlp/metrics", params={"name": name})
    assert answer.status_code == 200, answer.text
    return [series["points"] for series in answer.json()["series"]]


def test_integer_points_are_kept_exactly_and_doubles_stay_doubles(live: LiveReceiver) -> None:
    """asInt values (int64's ends, 2**53 + 1, 5) come back as the same JSON integers; asDouble ones as doubles."""
    sent: list[tuple[str, Any]] = [
        ("asInt", str(2**63 - 1)),
        ("asInt", str(-(2**63))),
        ("asInt", str(BIG)),
        ("asInt", "5"),
        ("asDouble", 5.0),
        ("asDouble", 2.5),
        ("asDouble", "NaN"),
    ]
    points = [{"timeUnixNano": str(t + 1), which: value} for t, (which, value) in enumerate(sent)]
    assert live.post("/v1/metrics", _gauge("exact", points, [("service.name", "svc")]), JSON).json() == {}
    (stored,) = _points(live, "exact")
    values = [point["value"] for point in stored]
    assert values == [2**63 - 1, -(2**63), BIG, 5, 5.0, 2.5, "NaN"]
    assert [type(value) for value in values] == [int, int, int, int, float, float, str]


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_stock_exporters_integer_counter_keeps_its_value(live: LiveReceiver, transport: str) -> None:
    """A stock SDK counter of 2**53 + 1 and a gauge of 5, exported over OTLP/HTTP or gRPC, are served as those
    integers, not as the doubles 9007199254740992.0 and 5.0."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": "stock-app"}))
    meter = provider.get_meter("tests.otel", "1.0")
    meter.create_counter("bytes_total").add(BIG)
    meter.create_gauge("depth").set(5)
    data = reader.get_metrics_data()
    provider.shutdown()
    assert data is not None
    exporter: MetricExporter
    if transport == "grpc":
        exporter = GrpcMetricExporter(endpoint=f"127.0.0.1:{live.config.grpc_port}", insecure=True)
    else:
        exporter = HttpMetricExporter(endpoint=f"{live.url}/v1/metrics")
    try:
        assert exporter.export(data).name == "SUCCESS"
    finally:
        exporter.shutdown()
    [[counted]] = _points(live, "bytes_total")
    [[depth]] = _points(live, "depth")
    assert (counted["value"], type(counted["value"])) == (BIG, int)
    assert (depth["value"], type(depth["value"])) == (5, int)


_RESOURCE: Final[list[tuple[str, Any]]] = [("service.name", "ordsvc"), ("host", "h1")]
_ATTRIBUTES: Final[list[tuple[str, Any]]] = [("route", "/orders"), ("peer", [("port", 80), ("name", "db")])]


def _reversed(items: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """``items`` in the reverse order, nested lists too."""
    return [(key, _reversed(value) if isinstance(value, list) else value) for key, value in reversed(items)]


def test_a_series_sent_with_its_attributes_in_another_order_is_one_series(live: LiveReceiver) -> None:
    """The same gauge with its resource attributes, point attributes or a nested key-value list in another order
    is one series of three points; its resource is shown as first sent."""
    orders = [(_RESOURCE, _ATTRIBUTES), (_RESOURCE, _reversed(_ATTRIBUTES)), (_reversed(_RESOURCE), _ATTRIBUTES)]
    for t, (resource, attributes) in enumerate(orders):
        point = {"timeUnixNano": str(100 * (t + 1)), "asDouble": 1.0, "attributes": _pairs(attributes)}
        assert live.post("/v1/metrics", _gauge("order_test", [point], resource), JSON).json() == {}
    (series,) = live.get("/api/otlp/metrics", params={"name": "order_test"}).json()["series"]
    assert [point["time_unix_nano"] for point in series["points"]] == [100, 200, 300]
    assert list(series["resource"]) == ["service.name", "host"]
    assert series["attributes"] == {"peer": {"port": 80, "name": "db"}, "route": "/orders"}


def _log_request(resource: list[tuple[str, Any]], scope: list[tuple[str, Any]], record: list[tuple[str, Any]]) -> Any:
    """One log record (with a key-value list body) in an ``ExportLogsServiceRequest``."""
    body = {
        "resourceLogs": [
            {
                "resource": {"attributes": _pairs(resource)},
                "scopeLogs": [
                    {
                        "scope": {"name": "dupscope", "attributes": _pairs(scope)},
                        "logRecords": [
                            {
                                "timeUnixNano": "1796539193066642432",
                                "severityNumber": 9,
                                "body": {"kvlistValue": {"values": _pairs(record)}},
                                "attributes": _pairs(record),
                            }
                        ],
                    }
                ],
            }
        ]
    }
    return json_format.ParseDict(body, logs_service_pb2.ExportLogsServiceRequest())


def test_a_log_record_sent_with_its_attributes_in_another_order_is_a_duplicate(live: LiveReceiver) -> None:
    """A record re-sent with its resource, scope, record and body attributes (nested lists too) in another order,
    as JSON, protobuf or over gRPC, is a duplicate: one record, shown as first sent."""
    scope = [("b", "x"), ("a", 1)]
    first = _log_request(_RESOURCE, scope, _ATTRIBUTES)
    again = _log_request(_reversed(_RESOURCE), _reversed(scope), _reversed(_ATTRIBUTES))
    assert live.post("/v1/logs", json.dumps(json_format.MessageToDict(first)).encode(), JSON).json() == {}
    assert live.post("/v1/logs", json.dumps(json_format.MessageToDict(again)).encode(), JSON).json() == {}
    assert live.post("/v1/logs", again.SerializeToString(), PROTOBUF).status_code == 200
    with grpc.insecure_channel(f"127.0.0.1:{live.config.grpc_port}") as channel:
        stub: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(LOGS_METHOD)
        stub(again.SerializeToString(), timeout=30)
    stats = live.get("/api/otlp/stats").json()["log_records"]
    assert (stats["accepted"], stats["duplicates"]) == (1, 3)
    (record,) = live.get("/api/otlp/logs", params={"limit": 50}).json()["records"]
    assert list(record["attributes"]) == ["route", "peer"]
    assert list(record["resource"]) == ["service.name", "host"]


def _former_key(row: tuple[Any, ...]) -> str:
    """The key versions before this fix gave a series: a digest of its resource and attributes as stored (the
    resource as sent, the point attributes' top level sorted), not of their canonical forms."""
    project, name, kind, unit, resource, scope_name, scope_version, attributes = row
    parts = [project, name, kind, unit, resource, scope_name, scope_version, attributes]
    return hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()


_SERIES_ROW: Final = "project, name, type, unit, resource, scope_name, scope_version, attributes"


def _give_series_their_former_keys(config: ReceiverConfig) -> int:
    """Rewrite every stored series' key as an earlier version made it (the receiver stopped); how many changed."""
    if config.db_url is None:
        with contextlib.closing(sqlite3.connect(config.db_path)) as conn, conn:
            rows = conn.execute(f"SELECT series_id, series_key, {_SERIES_ROW} FROM otlp_metric_series").fetchall()
            changed = [(_former_key(tuple(row[2:])), row[0]) for row in rows if _former_key(tuple(row[2:])) != row[1]]
            conn.executemany("UPDATE otlp_metric_series SET series_key = ? WHERE series_id = ?", changed)
        return len(changed)

    async def rewrite(url: str) -> int:
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch(f"SELECT series_id, series_key, {_SERIES_ROW} FROM otlp_metric_series")
            changed = [(_former_key(tuple(row)[2:]), row[0]) for row in rows if _former_key(tuple(row)[2:]) != row[1]]
            await conn.executemany("UPDATE otlp_metric_series SET series_key = $1 WHERE series_id = $2", changed)
        finally:
            await conn.close()
        return len(changed)

    return asyncio.run(rewrite(config.db_url))


def test_a_series_stored_by_an_earlier_version_is_found_whatever_the_order(config: ReceiverConfig) -> None:
    """A series stored under the order-dependent key of earlier versions takes the points sent after an upgrade
    in its own order and in another: still one series."""

    def send(live: LiveReceiver, t: int, resource: list[tuple[str, Any]], attributes: list[tuple[str, Any]]) -> None:
        point = {"timeUnixNano": str(t), "asDouble": 1.0, "attributes": _pairs(attributes)}
        assert live.post("/v1/metrics", _gauge("upgraded", [point], resource), JSON).json() == {}

    with receiver_running(config) as live:
        send(live, 100, _RESOURCE, _ATTRIBUTES)
    rewritten = _give_series_their_former_keys(config)  # sent unsorted: the earlier key was another
    with receiver_running(config) as live:
        send(live, 200, _RESOURCE, _ATTRIBUTES)  # found by its earlier key, and given its new one
        send(live, 300, _reversed(_RESOURCE), _reversed(_ATTRIBUTES))  # found by its new key
        times = [[point["time_unix_nano"] for point in points] for points in _points(live, "upgraded")]
    assert (rewritten, times) == (1, [[100, 200, 300]])
