"""capture="full": the complete output beside its preview, its hash, and whether it may be reused."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import json
import re
import tracemalloc
from typing import Any, NamedTuple

import pytest

import flowledger
import flowledger.instrument._pipeline
from flowledger._wire import FULL_CAPTURE_MAX_BYTES, REDACTED
from flowledger.instrument.capture import CapturePolicy, full_capture, to_jsonable
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
    """capture= takes preview or full; anything else is a UsageError naming the choices, for node() and run()."""
    with pytest.raises(flowledger.UsageError, match="node\\(\\): capture must be one of preview, full"):
        flowledger.node(capture="everything")
    with pytest.raises(flowledger.ConfigError, match="run\\(\\): capture must be one of preview, full"):
        flowledger.run("wf", capture="everything")


# --- a value over the cap: one pass, about the cap's memory, the same record -----------------------------


def _reference(value: Any, policy: CapturePolicy, prefix: str) -> dict[str, Any]:
    """What full capture recorded when it converted the whole value, then encoded it (the record to keep)."""
    try:
        redacted = to_jsonable(value, policy.redact)
        text = _json_text(redacted)
        how = "full"
        if _holds_marker(redacted):
            how = "unrepresentable"
        elif policy.redact is not None and redacted != to_jsonable(value, None):
            how = "redacted"
    except Exception:
        return {f"{prefix}_capture": "unrepresentable"}
    raw = text.encode("utf-8")
    fields: dict[str, Any] = {f"{prefix}_sha256": hashlib.sha256(raw).hexdigest()}
    if len(raw) > FULL_CAPTURE_MAX_BYTES:
        fields[f"{prefix}_capture"] = "too_large"
        return fields
    fields[f"{prefix}_capture"] = how
    fields[f"{prefix}_full"] = text
    return fields


_json_text = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def _holds_marker(value: Any) -> bool:
    if isinstance(value, dict):
        return "__flowledger__" in value or any(_holds_marker(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_marker(v) for v in value)
    return False


SLICE_CHARS = 256 * 1024
"""Longer than the slices a long string is escaped in."""
HEAVY_CHARS = 1024 * 1024 + 10
"""Heavier than a batch the C encoders take whole."""


class _Color(enum.Enum):
    RED = "red"


class _Level(enum.IntEnum):
    HIGH = 3


@dataclasses.dataclass
class _Point:
    x: int
    token: str


class _Pair(NamedTuple):
    left: Any
    right: Any


class _BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class _Plain:
    def __init__(self) -> None:
        self.secret = "hidden"
        self.n = 1


def _nested(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = [value]
    return value


def _cases() -> list[Any]:
    cyclic: list[Any] = [1, 2]
    cyclic.append(cyclic)
    shared = {"a": 1}
    escapes = 'quote " backslash \\ newline \n nul \x00 tab \t del \x7f é \u2028 😀 ' * 3
    return [
        None,
        True,
        12,
        2**70,
        -(2**64),
        1.5,
        1e16,
        -0.0,
        float("nan"),
        [float("inf"), 1],
        "plain",
        escapes,
        "lone \ud800 surrogate",
        "x" * (SLICE_CHARS + 7) + 'é\ud800"\n' * 3,
        {"api_key": "s3cret", "n": 1},
        {"outer": {"deeper": [{"password": {"nested": [1, 2]}}]}},
        {"token": REDACTED},
        {"token": _BadRepr()},
        {"token": _BadRepr(), "blob": b"\x00"},
        {"Api-Key": 1, "AUTHORIZATION": "Bearer x"},
        {"__flowledger__": "mine"},
        [{"k": i, "v": "__flowledger__"} for i in range(50)],
        {"blob": b"\x00\x01", "when": dt.datetime(2026, 1, 2, tzinfo=dt.UTC)},
        {1: "int key", None: "none", 2.5: "float", False: "bool", _Color.RED: "enum"},
        {1: "a", "1": "b"},
        {"\ud800": 1, "\ufffd": 2},  # noqa: F601 - two keys (ruff reads them as one), which cleaning makes one
        {"é": "ü", "x": ["ä"] * 3},
        [_Color.RED, _Level.HIGH, _Point(1, "t"), _Pair(1, {"secret": 2})],
        {"set": {3, 1, 2}, "frozen": frozenset({"b", "a"}), "tuple": (1, (2, 3))},
        cyclic,
        [shared, shared, {"again": shared}],
        _nested(70),
        {"deep": _nested(61)},
        {"deep": _nested(60)},
        _Plain(),
        ValueError("token=abc"),
        {"err": KeyError("password")},
        _BadRepr(),
        [i * 0.1 for i in range(3000)] + [object] + list(range(3000)),
        [{"row": i, "note": "é" * (i % 5)} for i in range(20_000)],
        {f"key{i}": {"v": i, "token" if i == 777 else "t": "x"} for i in range(5000)},
        [{"heavy": {"inner": "y" * (HEAVY_CHARS)}}, {"light": 1}],
        [[["z" * (HEAVY_CHARS // 2)] * 3]],
        {"rows": [{"k": i, "v": "abcdefgh"} for i in range(40_000)]},
        {"rows": [{"k": i, "secret": i} for i in range(40_000)]},
        ["x" * 1000] * 1200 + [float("nan")],
        {"__flowledger__": "mine", "rows": [{"k": i} for i in range(40_000)]},
        [{"token": REDACTED, "k": i} for i in range(20_000)] + [{"token": REDACTED, "rows": list(range(70_000))}],
    ]


@pytest.mark.parametrize("redact", [True, False])
def test_each_value_is_recorded_as_converting_it_whole_records_it(redact: bool) -> None:
    """Text, hash and capture match the whole conversion's, under the cap and over it, redacting or not."""
    policy = _policy(redact)
    for index, value in enumerate(_cases()):
        assert full_capture(value, policy, "output") == _reference(value, policy, "output"), index


def test_a_redaction_pattern_not_made_of_fragments_is_applied_as_the_whole_conversion_applies_it() -> None:
    """With an anchored pattern the JSON text cannot rule secrets out: every key is looked at."""
    policy = CapturePolicy(re.compile("^tok"), 4096)
    for index, value in enumerate([{"token": 1, "x": [{"tokens": 2}]}, [{"a": {"tok": "v"}}] * 100]):
        assert full_capture(value, policy, "output") == _reference(value, policy, "output"), index


def _policy(redact: bool) -> CapturePolicy:
    pattern = flowledger.instrument._pipeline.pipeline().policy.redact if redact else None
    return CapturePolicy(pattern, 4096)


def _peak_of_node_call(rows: int) -> int:
    """The most memory a capture="full" node returning ``rows`` small records takes while called (tracemalloc)."""
    out = [{"k": i, "v": "abcdefgh"} for i in range(rows)]

    @flowledger.node(capture="full")
    def produce(_: Any) -> Any:
        return out

    with capture_events() as events, flowledger.run("over-the-cap"):
        tracemalloc.start()
        try:
            produce(1)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    data = _finished(events, "produce")
    assert data["output_capture"] == "too_large"
    assert "output_full" not in data
    assert data["output_sha256"] == hashlib.sha256(_json_text(out).encode()).hexdigest()
    return peak


def test_an_output_over_the_cap_takes_about_the_same_memory_whatever_its_size() -> None:
    """A 4x larger output (about 1.3 and 5.2 MB of JSON) does not take 4x the memory to hash: it is not copied."""
    small = _peak_of_node_call(40_000)
    large = _peak_of_node_call(160_000)
    assert large < 2 * small, (small, large)


def test_the_hash_of_a_large_value_is_that_of_its_whole_json_text() -> None:
    """The text fed to the hash a piece at a time is the whole JSON text, whatever the batches were."""
    value = {"rows": [{"i": i, "s": "é" * (i % 7), "f": i / 3} for i in range(60_000)], "tail": [None, 2**65]}
    fields = full_capture(value, _policy(True), "output")
    assert fields["output_capture"] == "too_large"
    assert fields["output_sha256"] == hashlib.sha256(_json_text(to_jsonable(value)).encode()).hexdigest()


class _Labelled(str, enum.Enum):  # noqa: UP042 - an enum of a str mixin, as users write them
    """A str enum whose value is not its content: converting writes the value."""

    def __new__(cls, content: str, value: str) -> _Labelled:
        member = str.__new__(cls, content)
        member._value_ = value
        return member

    A = ("a", "label-a")


class _Counted(int, enum.Enum):
    """An int enum whose value is not its content."""

    def __new__(cls, content: int, value: str) -> _Counted:
        member = int.__new__(cls, content)
        member._value_ = value
        return member

    ONE = (1, "one")


@pytest.mark.parametrize("redact", [True, False])
def test_values_a_review_found_recorded_apart_are_recorded_as_converting_them_whole(redact: bool) -> None:
    """A tuple whose first batch is all of it (a slice of all of a tuple is the tuple itself: it was taken for a
    cycle, its text not JSON), and enum members whose value is not their mixin's content, in plain batches."""
    policy = _policy(redact)
    values = [
        {"k" * 30_000: ("a note about the token", "y" * 40_000)},
        {"k" * 30_000: ({"token": "x"}, "y" * 40_000)},
        {"k" * 30_000: ("y" * 40_000, float("nan"))},
        {"status": _Labelled.A, "rows": list(range(50))},
        [_Counted.ONE, 2, 3],
        {"k": _Counted.ONE},
    ]
    for index, value in enumerate(values):
        recorded = full_capture(value, policy, "output")
        assert recorded == _reference(value, policy, "output"), index
        if "output_full" in recorded:
            json.loads(recorded["output_full"])
