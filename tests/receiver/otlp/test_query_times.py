"""GET /api/otlp/metrics reads its since/until in every spelling RFC 3339 allows, as every time parameter does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics

from flowledger.receiver._config import ReceiverConfig
from tests.otel._support import LiveReceiver, receiver_running
from tests.receiver.otlp._stock import make_metrics


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveReceiver]:
    """A receiver holding the stock SDK's metrics (an ``orders`` counter among them), recorded now."""
    config = ReceiverConfig(db_path=tmp_path / "flowledger.db", sweep_interval_s=0)
    with receiver_running(config) as receiver:
        body = json.dumps(json_format.MessageToDict(encode_metrics(make_metrics()))).encode()
        assert receiver.post("/v1/metrics", body, "application/json").json() == {}
        yield receiver


@pytest.mark.parametrize(
    ("since", "until", "points"),
    [
        ("2000-01-31T08:00:00Z", "2999-01-31T08:00:00Z", 1),
        ("2000-01-31T08:00:00z", "2999-01-31T08:00:00z", 1),
        ("2000-01-31t08:00:00.5z", "2999-01-31t09:00:00+01:00", 1),
        ("2999-01-31T08:00:00z", None, 0),
        (None, "2000-01-31t08:00:00z", 0),
    ],
    ids=["upper", "lower-z", "lower-t-and-offset", "since-future", "until-past"],
)
def test_since_and_until_take_z_or_lowercase_z(
    live: LiveReceiver, since: str | None, until: str | None, points: int
) -> None:
    """A lowercase z or t bounds the points as the uppercase spelling does, never a 500."""
    params = {"name": "orders", **({"since": since} if since else {}), **({"until": until} if until else {})}
    answer = live.get("/api/otlp/metrics", params=params)
    assert answer.status_code == 200, answer.text
    (orders,) = answer.json()["series"]
    assert len(orders["points"]) == points
