"""Captured values nest no deeper than leaves their event within the receiver's default depth limit."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import flowledger
from flowledger._wire import MARKER_KEY
from flowledger.instrument._config import Settings
from flowledger.instrument.capture import CapturePolicy, RawJSON, _jsonable, capture
from flowledger.receiver._config import DEFAULT_MAX_DEPTH, ReceiverConfig
from tests.receiver._support import LiveReceiver, start_receiver

VALUE_LEVELS = DEFAULT_MAX_DEPTH - 2
"""What the receiver's default limit leaves a captured value: the event object and its ``data`` take two levels."""
POLICY = CapturePolicy(Settings().redact_regex, Settings().capture_limit_bytes)
BRACKETY = '[{"\\]' * 20 + '"'
"""A string of brackets, quotes and backslashes: JSON text whose nesting must not be read from its characters."""


def _levels(value: Any) -> int:
    """Nesting of arrays and objects, counted as the receiver counts it (a scalar is 0)."""
    if isinstance(value, dict):
        return 1 + max(map(_levels, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_levels, value), default=0)
    return 0


def _plain(record: Any) -> Any:
    return record.value() if isinstance(record, RawJSON) else record


def _nested(levels: int, inner: Any = None, *, innermost: type[list[Any]] | type[tuple[Any, ...]] = list) -> Any:
    """``levels`` lists inside one another, the innermost (a list or a tuple) holding ``inner`` (empty when None)."""
    value: Any = innermost(() if inner is None else (inner,))
    for _ in range(levels - 1):
        value = [value]
    return value


def _markers(value: Any) -> list[str]:
    if isinstance(value, dict):
        own = [value[MARKER_KEY]] if MARKER_KEY in value else []
        return own + [m for v in value.values() for m in _markers(v)]
    if isinstance(value, list):
        return [m for v in value for m in _markers(v)]
    return []


def test_the_capture_depth_is_the_receivers_default_limit_less_the_event_envelope() -> None:
    """The SDK's depth constants derive from the receiver's default limit, leaving a captured value's event room."""
    assert _jsonable.EVENT_MAX_DEPTH == DEFAULT_MAX_DEPTH
    assert _jsonable.MAX_DEPTH == DEFAULT_MAX_DEPTH - _jsonable.EVENT_ENVELOPE_DEPTH == VALUE_LEVELS


@pytest.mark.parametrize("path", ["fast", "converted"])
def test_values_are_kept_whole_to_the_limit_and_cut_past_it(path: str) -> None:
    """Plain JSON (orjson's path) and values needing conversion alike: whole to the limit, a depth marker past it."""
    for levels in (VALUE_LEVELS, VALUE_LEVELS + 1, 65, 300):
        value = _nested(levels, BRACKETY, innermost=list if path == "fast" else tuple)  # a tuple: full conversion
        record = _plain(capture(value, POLICY)[0])
        assert _levels(record) <= VALUE_LEVELS, levels
        if levels <= VALUE_LEVELS:
            assert record == json.loads(json.dumps(value))
            assert _markers(record) == []
        else:
            assert _markers(record) == ["depth"]


def test_a_marker_at_the_last_level_counts_as_a_level() -> None:
    """A NaN (whose marker is an object) at the deepest level does not take the record one level past the limit."""
    record = _plain(capture(_nested(VALUE_LEVELS, float("nan")), POLICY)[0])
    assert _levels(record) <= VALUE_LEVELS
    assert _markers(record) == ["depth"]


def test_a_deep_value_with_a_secret_inside_is_redacted_and_cut() -> None:
    """A plain value past the limit with a secret below its top: the record is redacted and within the limit."""
    record = _plain(capture({"outer": {"password": "hunter2"}, "deep": _nested(70)}, POLICY)[0])
    assert record["outer"] == {"password": "[REDACTED]"}
    assert _levels(record) <= VALUE_LEVELS
    assert _markers(record) == ["depth"]


def test_a_record_put_inside_a_container_leaves_room_for_it() -> None:
    """``nested=1`` (a generator's item, inside its output list) cuts one level sooner."""
    record = _plain(capture(_nested(VALUE_LEVELS), POLICY, nested=1)[0])
    assert _levels(record) <= VALUE_LEVELS - 1
    assert _markers(record) == ["depth"]


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveReceiver]:
    """A real receiver with a real SQLite ledger on 127.0.0.1, its default depth limit."""
    receiver = start_receiver(ReceiverConfig(db_path=tmp_path / "ledger.db"))
    yield receiver
    receiver.stop()


def test_every_event_carrying_deep_values_is_accepted_by_a_real_receiver(
    live: LiveReceiver, configure: Callable[..., Any], tmp_path: Path
) -> None:
    """Deep trigger data, attributes, inputs (a mapping), outputs, late attributes, generator items, metrics, artifacts
    and logs: the receiver rejects none of the events, and the run and every attempt are stored."""
    configure(endpoint=live.url, spool_dir=tmp_path / "spool", export_spans=False)
    deep = _nested(70)
    logger = logging.getLogger("tests.capture_depth")

    @flowledger.node
    def combine(left: Any, right: Any) -> Any:
        flowledger.metric("depth_seen", 1, kind="deep")
        flowledger.artifact(b"{}", name="deep.json")
        logger.warning("combining %s", json.dumps(left)[:20])
        current = flowledger.instrument.current_node()
        assert current is not None
        current.set_attribute("late", deep)
        return {"left": left, "right": right}

    @flowledger.node
    def items(value: Any) -> Any:
        yield value
        yield value

    with flowledger.run("deep-values", data=deep, attributes={"deep": deep}) as run:
        combine(deep, _nested(VALUE_LEVELS))
        assert len(list(items(_nested(VALUE_LEVELS)))) == 2
    assert flowledger.flush(10.0)
    assert flowledger.stats()["rejected"] == 0
    detail = live.get(f"/api/runs/{run.run_id}").json()
    assert detail["status"] == "succeeded"
    assert sorted(n["node_id"] for n in detail["nodes"]) == ["combine", "items"]
    assert {n["status"] for n in detail["nodes"]} == {"succeeded"}
