"""Whatever a client sends to the OTLP routes, the answer is a success or a client error, never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowledger.receiver._config import ReceiverConfig
from tests.otel._support import LiveReceiver, start_receiver

pytestmark = pytest.mark.slow

_json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
_json = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
_hexish = st.text("0123456789abcdefABCDEFxyz", max_size=40)
_span = st.fixed_dictionaries(
    {},
    optional={
        "traceId": _hexish,
        "spanId": _hexish,
        "parentSpanId": _hexish,
        "name": st.text(max_size=10) | st.integers(),
        "kind": st.integers(-2, 9) | st.sampled_from(["SPAN_KIND_SERVER", "nope"]),
        "startTimeUnixNano": st.integers(-5, 2**64 + 5).map(str) | st.integers(0, 2**63),
        "endTimeUnixNano": st.integers(-5, 2**64 + 5).map(str),
        "attributes": st.lists(st.fixed_dictionaries({"key": st.text(max_size=5), "value": _json}), max_size=3),
        "status": st.fixed_dictionaries({}, optional={"code": st.integers(-1, 4), "message": _json}),
        "events": st.lists(_json, max_size=2),
    },
)
_otlp_like = st.fixed_dictionaries(
    {
        "resourceSpans": st.lists(
            st.fixed_dictionaries(
                {"scopeSpans": st.lists(st.fixed_dictionaries({"spans": st.lists(_span, max_size=3)}), max_size=2)}
            ),
            max_size=2,
        )
    }
)


@pytest.fixture(scope="module")
def fuzz_receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveReceiver]:
    """One receiver for every generated request of this module."""
    live = start_receiver(ReceiverConfig(db_path=tmp_path_factory.mktemp("fuzz") / "f.db", sweep_interval_s=0))
    yield live
    live.stop()


def _post(receiver: LiveReceiver, path: str, body: bytes, content_type: str) -> httpx.Response:
    return receiver.post(path, body, content_type)


_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_SETTINGS
@given(body=st.binary(max_size=300), path=st.sampled_from(["/v1/traces", "/v1/logs", "/v1/metrics"]))
def test_any_bytes_as_protobuf(fuzz_receiver: LiveReceiver, body: bytes, path: str) -> None:
    """Random bytes sent as protobuf are decoded or refused with 400."""
    assert _post(fuzz_receiver, path, body, "application/x-protobuf").status_code in (200, 400)


@_SETTINGS
@given(document=_json | _otlp_like)
def test_any_json_document(fuzz_receiver: LiveReceiver, document: Any) -> None:
    """Any JSON value, and OTLP-shaped JSON with wrong ids, numbers and kinds, is stored, refused per span, or 400."""
    response = _post(fuzz_receiver, "/v1/traces", json.dumps(document).encode(), "application/json")
    assert response.status_code in (200, 400), response.text
    if response.status_code == 200:
        answer = response.json()
        assert set(answer) <= {"partialSuccess"}


def test_fuzzed_spans_are_still_served(fuzz_receiver: LiveReceiver) -> None:
    """After the fuzzing, a stored trace is still served (nothing broke the store)."""
    span = {"traceId": "ab" * 16, "spanId": "cd" * 8, "name": "after", "startTimeUnixNano": "1", "endTimeUnixNano": "2"}
    body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}).encode()
    assert _post(fuzz_receiver, "/v1/traces", body, "application/json").status_code == 200
    assert fuzz_receiver.trace("ab" * 16)["span_count"] >= 1
