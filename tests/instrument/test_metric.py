"""flowledger.metric: validated at the call, summarised per series on the node attempt."""

from __future__ import annotations

import math
from typing import Any

import pytest

import flowledger
from flowledger.instrument._metric import MAX_SERIES_PER_ATTEMPT
from flowledger.testing import CapturedEvents


def test_values_are_summarised_per_series_on_the_node(events: CapturedEvents) -> None:
    """Values of one name and label set make one summary (count, sum, min, max, last), with the run's workflow."""

    @flowledger.node
    def call(hits: list[int]) -> None:
        for hit in hits:
            flowledger.metric("provider_cache_hit", hit, provider="openai", cached=True)
        flowledger.metric("latency_s", 0.5)

    with flowledger.run("agent"):
        call([1, 0, 1])
    data = events.nodes("call")[0]["data"]
    assert data["workflow_id"] == "agent"
    assert data["metrics"] == [
        {"name": "latency_s", "labels": {}, "count": 1, "sum": 0.5, "min": 0.5, "max": 0.5, "value": 0.5},
        {
            "name": "provider_cache_hit",
            "labels": {"cached": "true", "provider": "openai"},
            "count": 3,
            "sum": 2,
            "min": 0,
            "max": 1,
            "value": 1,
        },
    ]


@pytest.mark.parametrize(
    ("name", "value", "labels", "message"),
    [
        ("cache hit", 1, {}, "a metric name must be"),
        ("9lives", 1, {}, "a metric name must be"),
        ("hits", math.nan, {}, "must be finite"),
        ("hits", math.inf, {}, "must be finite"),
        ("hits", 2.0**60, {}, "magnitude at most 2\\*\\*53"),
        ("hits", 10**400, {}, "magnitude at most 2\\*\\*53, got an integer of 1329 bits"),
        ("hits", True, {}, "must be an int or a float"),
        ("hits", "1", {}, "must be an int or a float"),
        ("hits", 1, {"run_id": "x"}, "'run_id' cannot be a label"),
        ("hits", 1, {"__name": "x"}, "the label name '__name'"),
        ("hits", 1, {"who": 1.5}, "label 'who' must be a string, an int or a bool"),
        ("hits", 1, {"who": "x" * 129}, "keep label values to 128"),
        ("hits", 1, {f"l{i}": "x" for i in range(9)}, "at most 8 are kept"),
    ],
)
def test_a_bad_metric_is_a_usage_error_at_the_call(
    events: CapturedEvents, name: str, value: Any, labels: dict[str, Any], message: str
) -> None:
    """Each bad name, value or label raises UsageError saying what is wrong; nothing is recorded."""

    @flowledger.node
    def call() -> None:
        flowledger.metric(name, value, **labels)

    with flowledger.run("agent"), pytest.raises(flowledger.UsageError, match=message):
        call()
    assert "metrics" not in events.nodes("call")[0]["data"]


def test_series_per_attempt_are_bounded(events: CapturedEvents) -> None:
    """A label that takes a new value each time is refused past MAX_SERIES_PER_ATTEMPT series."""

    @flowledger.node
    def call() -> None:
        for i in range(MAX_SERIES_PER_ATTEMPT + 1):
            flowledger.metric("hits", 1, customer=str(i))

    with flowledger.run("agent"), pytest.raises(flowledger.UsageError, match="at most 100 series"):
        call()
    assert len(events.nodes("call")[0]["data"]["metrics"]) == MAX_SERIES_PER_ATTEMPT


def test_outside_a_node_is_a_usage_error_unless_records_are_off(configure: Any) -> None:
    """Outside any node (in a run or not) metric() says to call it in a node; with the SDK disabled it does nothing."""
    with pytest.raises(flowledger.UsageError, match=r"inside a function decorated with @flowledger\.node"):
        flowledger.metric("hits", 1)
    with flowledger.run("agent"), pytest.raises(flowledger.UsageError, match="records on the current node"):
        flowledger.metric("hits", 1)
    configure(disabled=True)
    flowledger.metric("hits", 1)
