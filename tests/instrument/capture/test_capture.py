"""Capture: arbitrary values become JSON-safe, redacted, bounded records."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import tracemalloc
import uuid
from decimal import Decimal
from typing import Any

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowledger.instrument._config import Settings
from flowledger.instrument.capture import CapturePolicy, RawJSON, capture, materialize
from flowledger.instrument.delivery._spool import encode_batch

POLICY = CapturePolicy(Settings().redact_regex, 4096)
NO_LIMIT = CapturePolicy(Settings().redact_regex, 10**9)


def record(value: Any, policy: CapturePolicy = POLICY) -> Any:
    """What a record holds for ``value``, as the receiver will see it."""
    captured, _ = capture(value, policy)
    return captured.value() if isinstance(captured, RawJSON) else captured


# JSON values whose keys never look secret: these must round-trip exactly.
def _not_secret(key: str) -> bool:
    redact = Settings().redact_regex
    assert redact is not None
    return redact.search(key.lower().replace("-", "_")) is None


_keys = st.text(max_size=12).filter(_not_secret)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(exclude_categories=["Cs"])),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(_keys, children, max_size=5),
    max_leaves=30,
)


@given(json_values)
@settings(max_examples=300, deadline=None)
def test_json_values_round_trip_exactly(value: Any) -> None:
    """A JSON value within the limit is captured unchanged and survives encoding."""
    captured = record(value, NO_LIMIT)
    assert json.loads(json.dumps(captured)) == value


anything = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.binary(max_size=20)
    | st.datetimes()
    | st.dates()
    | st.decimals()
    | st.uuids()
    | st.builds(object),
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.frozensets(st.integers(), max_size=4)
        | st.dictionaries(st.text(max_size=8) | st.integers(), children, max_size=4)
    ),
    max_leaves=25,
)


@given(anything, st.integers(min_value=16, max_value=512))
@settings(max_examples=300, deadline=None)
def test_any_value_captures_to_valid_bounded_json(value: Any, limit: int) -> None:
    """Whatever the value, capture never raises, yields strict JSON, and respects the byte limit."""
    captured = record(value, CapturePolicy(None, limit))
    text = json.dumps(captured, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    if isinstance(captured, dict) and captured.get("__flowledger__") == "truncated":
        assert len(captured["preview"].encode()) <= limit
        # The size of the same value captured without a limit, in the SDK's own encoding (what was cut):
        # the json module spells some floats otherwise (-6.103515625e-05, where the SDK writes
        # -0.00006103515625), so its length is not the wire's.
        whole, true_size = capture(value, CapturePolicy(None, 1 << 40))
        assert not (isinstance(whole, dict) and whole.get("__flowledger__") == "truncated")
        assert "estimated" not in captured
        if "original_bytes" in captured:
            assert captured["original_bytes"] == true_size > limit
        else:
            assert limit < captured["original_bytes_at_least"] <= true_size
    else:
        assert len(text.encode()) <= limit or captured is value


def test_secret_keys_are_redacted_at_any_depth() -> None:
    """Keys like password, api_key, Authorization are redacted wherever they are nested."""
    value = {
        "user": "ann",
        "password": "hunter2",
        "nested": [{"headers": {"Authorization": "Bearer x", "X-Api-Key": "k"}}],
        "sessionCookie": "c",
        "tokens_used": 3,
    }
    captured = record(value, POLICY)
    assert captured["user"] == "ann"
    assert captured["password"] == "[REDACTED]"
    assert captured["nested"][0]["headers"] == {"Authorization": "[REDACTED]", "X-Api-Key": "[REDACTED]"}
    assert captured["sessionCookie"] == "[REDACTED]"
    assert "hunter2" not in json.dumps(captured)


def test_redaction_patterns_are_configurable() -> None:
    """A custom pattern list redacts exactly the keys it names."""
    policy = CapturePolicy(Settings(redact_patterns=("ssn",)).redact_regex, 4096)
    captured = record({"ssn": "1", "password": "p"}, policy)
    assert captured == {"ssn": "[REDACTED]", "password": "p"}


def test_large_payload_is_cut_on_a_utf8_boundary_with_a_marker() -> None:
    """A payload over 4 KiB keeps a 4 KiB preview cut between characters and says how much was cut."""
    value = {"text": "é€😀" * 2000}
    captured = record(value, POLICY)
    assert captured["__flowledger__"] == "truncated"
    preview = captured["preview"]
    assert len(preview.encode()) <= 4096
    assert len(preview.encode()) > 4096 - 4
    full = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    assert full.startswith(preview)
    assert "original_bytes" not in captured  # converted only as far as the preview: a lower bound, named so
    assert 4096 < captured["original_bytes_at_least"] <= len(full.encode())
    assert captured["omitted_bytes_at_least"] == captured["original_bytes_at_least"] - len(preview.encode())


def test_a_payload_just_over_the_limit_reports_its_exact_size() -> None:
    """A payload the SDK encodes whole says exactly how many bytes it had and how many were cut."""
    value = [{"text": "x" * 100} for _ in range(45)]
    captured = record(value)
    full = json.dumps(value, separators=(",", ":"))
    assert captured["__flowledger__"] == "truncated"
    assert "estimated" not in captured
    assert captured["original_bytes"] == len(full)
    assert full.startswith(captured["preview"])


def test_a_huge_payload_is_previewed_without_converting_all_of_it() -> None:
    """A million rows become a 4 KiB preview marked as an estimate, secrets in it still redacted."""
    rows = [{"id": i, "token": f"secret-{i}"} for i in range(1_000_000)]
    captured = record(rows)
    assert captured["__flowledger__"] == "truncated"
    assert "estimated" not in captured
    assert "original_bytes" not in captured
    assert captured["original_bytes_at_least"] >= 2_000_000
    assert len(captured["preview"].encode()) <= 4096
    assert captured["preview"].startswith('[{"id":0,"token":"[REDACTED]"},{"id":1,')
    assert "secret-" not in captured["preview"]


def test_a_truncation_marker_never_overstates_what_it_knows() -> None:
    """A 124 KB list of small rows: the marker gives its exact size, or a lower bound named as one, never a guess."""
    rows = [{"n": i, "text": "x" * 40} for i in range(2050)]
    true_size = len(json.dumps(rows, separators=(",", ":")))
    captured = record(rows)
    assert captured["__flowledger__"] == "truncated"
    assert set(captured) <= {"__flowledger__", "preview", "original_bytes", "omitted_bytes"} | {
        "original_bytes_at_least",
        "omitted_bytes_at_least",
    }
    assert captured.get("original_bytes", true_size) == true_size
    assert captured.get("original_bytes_at_least", 0) <= true_size
    kept = len(captured["preview"].encode())
    assert captured.get("omitted_bytes", true_size - kept) == true_size - kept


def test_a_huge_secret_is_redacted_not_reported_as_truncated() -> None:
    """A value that is huge only under a secret-looking key is recorded whole, redacted, with no truncation marker."""
    captured = record({"token": "x" * 100_000, "user": "ann"})
    assert captured == {"token": "[REDACTED]", "user": "ann"}


@dataclasses.dataclass
class Order:
    sku: str
    placed: dt.datetime
    tags: set[str]


class Customer(pydantic.BaseModel):
    name: str
    api_key: str


def test_rich_python_values_become_json() -> None:
    """Dataclasses, pydantic models, datetimes, sets, bytes, decimals, exceptions and odd objects are kept."""
    placed = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    value = {
        "order": Order("A1", placed, {"b", "a"}),
        "customer": Customer(name="Ann", api_key="k"),
        "raw": b"\x00\xff",
        "price": Decimal("1.10"),
        "id": uuid.UUID(int=1),
        "err": ValueError("bad"),
        "nan": float("nan"),
        "tuple": (1, 2),
        "obj": object(),
        1: "int key",
    }
    captured = record(value, POLICY)
    assert captured["order"] == {"sku": "A1", "placed": "2026-01-02T03:04:05+00:00", "tags": ["a", "b"]}
    assert captured["customer"] == {"name": "Ann", "api_key": "[REDACTED]"}
    assert captured["raw"] == {"__flowledger__": "bytes", "length": 2, "base64": "AP8="}
    assert captured["price"] == "1.10"
    assert captured["id"] == str(uuid.UUID(int=1))
    assert captured["err"] == {"__flowledger__": "exception", "type": "ValueError", "message": "bad"}
    assert captured["nan"] == {"__flowledger__": "float", "value": "nan"}
    assert captured["tuple"] == [1, 2]
    assert captured["obj"]["__flowledger__"] == "repr"
    assert captured["1"] == "int key"
    json.dumps(captured, allow_nan=False)


def test_cycles_and_lone_surrogates_do_not_break_capture() -> None:
    """A self-containing list and a string with a lone surrogate still capture to valid UTF-8 JSON."""
    loop: list[Any] = [1]
    loop.append(loop)
    captured = record({"loop": loop, "bad": "a\ud800b"})
    assert captured["loop"][1] == {"__flowledger__": "cycle", "type": "list"}
    json.dumps(captured, ensure_ascii=False).encode("utf-8")
    assert re.fullmatch(r"a.b", captured["bad"])


def test_named_records_keep_their_field_names_and_redaction() -> None:
    """Named tuples, plain objects and SimpleNamespace are recorded by field, so secret fields are redacted."""
    import types
    from typing import NamedTuple

    class Creds(NamedTuple):
        user: str
        password: str

    class Plain:
        def __init__(self) -> None:
            self.name = "ann"
            self.api_key = "sk-live-1"

    captured = record({"creds": Creds("bob", "hunter2"), "plain": Plain(), "ns": types.SimpleNamespace(token="t")})
    assert captured == {
        "creds": {"user": "bob", "password": "[REDACTED]"},
        "plain": {"name": "ann", "api_key": "[REDACTED]"},
        "ns": {"token": "[REDACTED]"},
    }


def test_a_raising_model_dump_becomes_a_capture_error_marker() -> None:
    """A value whose conversion raises is recorded as a capture_error marker, not an exception."""

    class Weird:
        def model_dump(self, mode: str) -> Any:
            raise RuntimeError("nope")

    captured = record(Weird())
    assert captured["__flowledger__"] == "capture_error"
    assert "nope" in captured["error"]


@pytest.mark.parametrize("value", [None, True, 0, 12345678901234567890, "plain"])
def test_scalars_pass_through(value: Any) -> None:
    """Plain scalars are captured as themselves."""
    assert record(value) == value


def test_a_capture_is_a_snapshot_of_the_value_at_that_moment() -> None:
    """Changing a value after it was captured does not change the record."""
    value = {"items": [1, 2]}
    captured, _ = capture(value, POLICY)
    value["items"].append(3)
    assert materialize({"data": {"input": captured}})["data"]["input"] == {"items": [1, 2]}


def test_a_kept_snapshot_takes_the_memory_of_its_json_not_the_encoders_buffer() -> None:
    """A small payload's snapshot holds about its own size in memory, however large the encoder's buffer was.

    Snapshots wait in the sender's queue until the worker writes their
    events: 4 KiB kept per payload (orjson's unshrunk buffer) would be
    memory and cache misses on every call.
    """
    value = {"order_id": "A-1", "lines": [{"sku": "S", "qty": 2}], "currency": "EUR"}
    capture(value, POLICY)  # warm: caches of keys and verdicts are not counted
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [capture(value, POLICY)[0] for _ in range(100)]
        held = (tracemalloc.get_traced_memory()[0] - before) / len(kept)
    finally:
        tracemalloc.stop()
    assert isinstance(kept[0], RawJSON)
    assert held < 4 * kept[0].nbytes + 400, f"{held:.0f} bytes held per snapshot of {kept[0].nbytes} bytes of JSON"


def test_encoded_batches_splice_payloads_and_redact_them() -> None:
    """The sender's batch encoding writes captured payloads into the event's JSON, nested secrets redacted."""
    captured, _ = capture({"user": "ann", "auth": {"token": "s3cret"}}, POLICY)
    event = {"v": 1, "kind": "node_started", "data": {"node_id": "a", "input": captured, "output": None}}
    text = encode_batch([event]).decode()
    assert json.loads(text) == {
        "events": [
            {
                "v": 1,
                "kind": "node_started",
                "data": {"node_id": "a", "output": None, "input": {"user": "ann", "auth": {"token": "[REDACTED]"}}},
            }
        ]
    }
    assert "s3cret" not in text


def test_top_level_secrets_are_redacted_on_the_hot_path() -> None:
    """A top-level secret key is redacted before encoding, so nothing decodes it later; deeper ones still are.

    The search for deeper secret-looking keys waits for the first reader (the sender's worker).
    """
    flat, _ = capture({"user": "ann", "API-Key": "k", "n": 1}, POLICY)
    assert isinstance(flat, RawJSON)
    assert flat.text == '{"user":"ann","API-Key":"[REDACTED]","n":1}'
    assert flat.raw() == b'{"user":"ann","API-Key":"[REDACTED]","n":1}'  # final as encoded: spliced in as it is
    nested, _ = capture({"user": "ann", "token": "t", "auth": {"password": "p"}}, POLICY)
    assert isinstance(nested, RawJSON)
    assert nested.value() == {"user": "ann", "token": "[REDACTED]", "auth": {"password": "[REDACTED]"}}
    assert '"t"' not in nested.json()
    assert '"p"' not in nested.json()


@pytest.mark.parametrize(
    ("value", "marker"),
    [
        (10**5000, {"__flowledger__": "int", "value": "1e5000", "digits": 5001}),
        (2**64, {"__flowledger__": "int", "value": str(2**64), "digits": 20}),
        (-(2**63) - 1, {"__flowledger__": "int", "value": str(-(2**63) - 1), "digits": 19}),
    ],
    ids=["10**5000", "2**64", "-2**63-1"],
)
def test_integers_past_64_bits_are_captured_as_a_marker_that_encodes(value: int, marker: dict[str, Any]) -> None:
    """An integer JSON tools cannot hold (orjson refuses it) becomes an ``int`` marker, alone or inside a container."""
    assert record(value) == marker
    assert record({"n": [value, 2**64 - 1]}) == {"n": [marker, 2**64 - 1]}
    assert record({value: 1}) == {marker["value"]: 1}
    for captured in (capture(value, POLICY)[0], capture([value], POLICY)[0]):
        encode_batch([{"data": {"output": captured}}])  # the sender's encoder takes it


def test_lone_surrogates_become_the_replacement_character() -> None:
    """Lone surrogates in values and keys become U+FFFD, and the record encodes with the sender's encoder."""
    captured = record({"k\udc00": ["x\ud800y"], "s": "\ud800"})
    assert captured == {"k\ufffd": ["x\ufffdy"], "s": "\ufffd"}
    assert record("\ud800") == "\ufffd"
    encode_batch([{"data": {"input": capture("\ud800", POLICY)[0]}}])


def test_an_error_message_with_a_lone_surrogate_is_recorded_with_the_replacement_character() -> None:
    """error_record replaces lone surrogates in the message and the stack, so the event can be sent."""
    from flowledger.instrument._run import error_record

    try:
        raise ValueError("bad \ud800")
    except ValueError as exc:
        error = error_record(exc)
    assert error["message"] == "bad \ufffd"
    assert "\ud800" not in error["stack"]
    encode_batch([{"data": {"error": error}}])
