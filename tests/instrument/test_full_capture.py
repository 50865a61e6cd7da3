"""capture="full": the complete output beside its preview, its hash, and whether it may be reused."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

import flowledger
from flowledger._wire import FULL_CAPTURE_MAX_BYTES
from flowledger.testing import capture_events


def _finished(events: Any, node_id: str) -> dict[str, Any]:
    (event,) = [e for e in events.nodes(node_id) if e["kind"] == "node_finished"]
    data: dict[str, Any] = event["data"]
    return data


def test_a_full_capture_carries_the_complete_output_and_its_hash() -> None:
    """An output over the 4 KiB preview arrives whole in output_full, hashing to output_sha256."""
    big = {"rows": ["x" * 100 for _ in range(100)]}

    @flowledger.node(capture="full")
    def produce(_: Any) -> Any:
        return big

    with capture_events() as events, flowledger.run("full-capture"):
        produce(1)
    data = _finished(events, "produce")
    assert data["output_capture"] == "full"
    assert json.loads(data["output_full"]) == big
    assert hashlib.sha256(data["output_full"].encode()).hexdigest() == data["output_sha256"]
    assert data["output"]["__flowledger__"] == "truncated"  # the preview is still the 4 KiB cut


def test_the_run_capture_applies_to_its_nodes_and_its_trigger_data() -> None:
    """flowledger.run(capture="full") captures the trigger data and every node's output in full."""

    @flowledger.node
    def step(x: Any) -> Any:
        return {"y": x}

    with capture_events() as events, flowledger.run("full-run", data={"a": 1}, capture="full"):
        step(2)
    (started,) = [e for e in events if e["kind"] == "run_started"]
    assert json.loads(started["data"]["trigger_data_full"]) == {"a": 1}
    assert _finished(events, "step")["output_capture"] == "full"


@pytest.mark.parametrize(
    ("value", "how"),
    [
        ({"api_key": "s3cret", "n": 1}, "redacted"),
        ({"blob": b"\x00\x01"}, "unrepresentable"),
    ],
)
def test_an_output_that_is_not_the_real_one_is_marked(value: Any, how: str) -> None:
    """A redacted secret or a value with no JSON form is stored, but marked as not the real output."""

    @flowledger.node(capture="full")
    def produce(_: Any) -> Any:
        return value

    with capture_events() as events, flowledger.run("marked"):
        produce(1)
    data = _finished(events, "produce")
    assert data["output_capture"] == how
    assert "s3cret" not in data["output_full"]


def test_an_output_over_the_cap_keeps_only_its_hash() -> None:
    """Past FULL_CAPTURE_MAX_BYTES the text is not sent; its hash and too_large are."""
    huge = "x" * (FULL_CAPTURE_MAX_BYTES + 1)

    @flowledger.node(capture="full")
    def produce(_: Any) -> Any:
        return huge

    with capture_events() as events, flowledger.run("huge"):
        produce(1)
    data = _finished(events, "produce")
    assert data["output_capture"] == "too_large"
    assert "output_full" not in data
    assert data["output_sha256"] == hashlib.sha256(json.dumps(huge).encode()).hexdigest()


def test_a_capture_mode_that_does_not_exist_is_refused() -> None:
    """capture= takes preview or full; anything else is a ValueError naming the choices."""
    with pytest.raises(ValueError, match="capture must be one of preview, full"):
        flowledger.node(capture="everything")
