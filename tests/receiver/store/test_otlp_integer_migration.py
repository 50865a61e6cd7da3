"""The migration giving OTLP metric points an exact integer value, on each engine: points stored before read as
they did (doubles), and integers sent after are kept exactly, in the same series."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any, Final

import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

from flowledger.receiver._config import ReceiverConfig
from flowledger.receiver.otlp._metrics import points_from_request
from flowledger.receiver.store import _migrations as migrations
from flowledger.receiver.store._migrations import MIGRATIONS, SCHEMA_VERSION, schema_version
from flowledger.receiver.store._otlp_metrics import SERIES_FIELDS
from flowledger.receiver.store.postgres import _migrations as pg_migrations
from tests.otel._support import receiver_running

BIG: Final = 2**53 + 1
_POINT: Final = "INSERT INTO otlp_metric_points (series_id, time_ns, start_ns, value, data) VALUES "
_SERIES: Final = f"INSERT INTO otlp_metric_series (series_key, {', '.join(SERIES_FIELDS)}) VALUES "


def _series_row() -> tuple[Any, ...]:
    """The stored columns of the series of gauge ``depth`` as an earlier receiver made it (no attributes)."""
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    gauge = request.resource_metrics.add().scope_metrics.add().metrics.add(name="depth").gauge
    gauge.data_points.add(time_unix_nano=1, as_double=7.0)
    return points_from_request(request, project=None).rows[0].series.values()


def _old_sqlite(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A SQLite database at the version before integer values, holding one point of ``depth`` (7.0 at ns 1)."""
    before = MIGRATIONS.index(migrations._otlp_integer_values)
    with monkeypatch.context() as patched:
        patched.setattr(migrations, "MIGRATIONS", MIGRATIONS[:before])
        patched.setattr(migrations, "SCHEMA_VERSION", before)
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            migrations.migrate(conn)
            conn.execute(_SERIES + f"({', '.join('?' * (len(SERIES_FIELDS) + 1))})", _series_row())
            conn.execute(_POINT + "(1, 1, NULL, 7.0, NULL)")
        finally:
            conn.close()


def _old_postgres(url: str) -> None:
    """A PostgreSQL database at the version before integer values, holding one point of ``depth`` (7.0 at ns 1)."""
    import asyncpg

    before = pg_migrations.PG_MIGRATIONS.index(pg_migrations._OTLP_INTEGER_VALUES)

    async def make() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("CREATE TABLE flowledger_schema (version integer NOT NULL)")
            await conn.execute("INSERT INTO flowledger_schema VALUES ($1)", before)
            for script in pg_migrations.PG_MIGRATIONS[:before]:
                await conn.execute(script)
            places = ", ".join(f"${n + 1}" for n in range(len(SERIES_FIELDS) + 1))
            await conn.execute(_SERIES + f"({places})", *_series_row())
            await conn.execute(_POINT + "(1, 1, NULL, 7.0, NULL)")
        finally:
            await conn.close()

    asyncio.run(make())


@pytest.mark.parametrize("engine_kind", ["sqlite", "postgres"])
def test_points_stored_before_read_as_doubles_and_integers_after_are_exact(
    engine_kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """A database of the schema before opens: its point reads as the double it was, and an asInt point of the same
    series sent after is served as that exact integer."""
    config = ReceiverConfig(db_path=tmp_path / "old.db", sweep_interval_s=0)
    if engine_kind == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        _old_postgres(url)
        config = ReceiverConfig(db_path=tmp_path / "unused.db", db_url=url, sweep_interval_s=0)
    else:
        _old_sqlite(config.db_path, monkeypatch)
    body = b'{"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": "depth", "gauge": {"dataPoints": [%s]}}]}]}]}'
    with receiver_running(config) as live:
        point = b'{"timeUnixNano": "2", "asInt": "%d"}' % BIG
        assert live.post("/v1/metrics", body % point, "application/json").json() == {}
        (series,) = live.get("/api/otlp/metrics", params={"name": "depth"}).json()["series"]
    values = [point["value"] for point in series["points"]]
    assert (values, [type(value) for value in values]) == ([7.0, BIG], [float, int])
    if engine_kind == "sqlite":
        with sqlite3.connect(config.db_path) as conn:
            assert schema_version(conn) == SCHEMA_VERSION
