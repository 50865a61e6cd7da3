"""Fuzzing the ingest, query and OTLP routes of a real receiver with huge numbers, extreme times and surrogates.

Whatever a client sends, the answer is a success or a client error (never a
500 or a 503), and every event of an ingest batch is accounted for: stored,
a duplicate, or rejected on its own. Bounded: a fixed number of examples per
route, no time limits.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowledger.receiver._config import ReceiverConfig
from tests.receiver._support import LiveReceiver, simple_run, start_receiver

pytestmark = pytest.mark.slow

_SETTINGS = settings(
    max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

_HUGE_INTS = st.sampled_from([2**53, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30, -1]) | st.integers()
_EXTREME_FLOATS = st.sampled_from([1e300, 1.7976931348623157e308, 5e-324, -0.0, 2.0**63, 1e16]) | st.floats(
    allow_nan=False, allow_infinity=False
)
_EXTREME_TIMES = st.sampled_from(
    [
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999Z",
        "2026-02-30T00:00:00Z",
        "2026-01-01T24:00:00Z",
        "2026-01-01T00:00:00+23:59",
        "2026-01-01T00:00:00.123456789-23:59",
    ]
)
_SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"])
_TEXT_WITH_SURROGATES = st.lists(st.one_of(_SURROGATES, st.characters()), max_size=6).map("".join)
_HOSTILE = st.one_of(_HUGE_INTS, _EXTREME_FLOATS, _EXTREME_TIMES, _TEXT_WITH_SURROGATES)
_PATHS = [
    ("producer_seq",),
    ("seq",),
    ("ts",),
    ("run_id",),
    ("event_id",),
    ("data", "duration_ms"),
    ("data", "started_at"),
    ("data", "cost", "usd"),
    ("data", "cost", "tokens"),
    ("data", "heartbeat_interval_s"),
    ("data", "attempt"),
    ("data", "item"),
    ("data", "trigger_data", "order"),
    ("data", "output"),
    ("data", "workflow_name"),
]


@pytest.fixture(scope="module")
def fuzz_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveReceiver]:
    """One receiver for every generated request of this module."""
    live = start_receiver(ReceiverConfig(db_path=tmp_path_factory.mktemp("fuzz") / "f.db", sweep_interval_s=0))
    yield live
    live.stop()


def _put(event: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    target = event
    for part in path[:-1]:
        nxt = target.get(part)
        if not isinstance(nxt, dict):
            nxt = target[part] = {}
        target = nxt
    target[path[-1]] = value


def _post_raw(live: LiveReceiver, document: Any) -> httpx.Response:
    # ensure_ascii escapes lone surrogates as \\udXXX, as a hostile client would send them
    body = json.dumps(document, ensure_ascii=True).encode()
    return httpx.post(f"{live.url}/v1/events", content=body, headers={"content-type": "application/json"}, timeout=30)


@_SETTINGS
@given(
    changes=st.lists(
        st.tuples(st.integers(0, 3), st.sampled_from(_PATHS), _HOSTILE),
        min_size=1,
        max_size=4,
    ),
    bad_key=st.none() | _TEXT_WITH_SURROGATES,
)
def test_ingest_accounts_for_every_event_and_never_fails_the_batch(
    fuzz_live: LiveReceiver, changes: list[tuple[int, tuple[str, ...], Any]], bad_key: str | None
) -> None:
    """Hostile values anywhere in a batch: 200, and each event stored, a duplicate, or rejected with its index."""
    run = simple_run()
    events = copy.deepcopy(run.events)
    for index, path, value in changes:
        _put(events[index], path, value)
    if bad_key is not None:
        events[2]["data"]["input"] = {bad_key: 1}
    response = _post_raw(fuzz_live, {"events": events})
    assert response.status_code == 200, response.text
    answer = response.json()
    rejected = {r["index"] for r in answer["rejected"]}
    assert len(rejected) == len(answer["rejected"])
    assert answer["accepted"] + answer["duplicates"] + len(rejected) == len(events)


_QUERY_VALUES = st.one_of(
    _EXTREME_TIMES, _TEXT_WITH_SURROGATES, _HUGE_INTS.map(str), _EXTREME_FLOATS.map(repr), st.just("")
)


@_SETTINGS
@given(
    route=st.sampled_from(["/api/runs", "/api/viewer/runs", "/api/viewer/summary", "/api/viewer/facets"]),
    params=st.dictionaries(
        st.sampled_from(["since", "until", "limit", "offset", "status", "workflow_id", "cursor", "q", "trigger"]),
        _QUERY_VALUES,
        max_size=3,
    ),
)
def test_query_routes_answer_bad_parameters_with_a_client_error(
    fuzz_live: LiveReceiver, route: str, params: dict[str, str]
) -> None:
    """Huge numbers, extreme times and surrogates as query parameters are answered 200 or 4xx, never 5xx."""
    safe = {k: v.encode("utf-8", "surrogatepass").decode("utf-8", "replace") for k, v in params.items()}
    response = fuzz_live.get(route, params=safe)
    assert response.status_code < 500, (route, params, response.text)


_SPAN_TIME = st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([2**63 - 1, 2**63, 2**64 - 1]))


@_SETTINGS
@given(start=_SPAN_TIME, end=_SPAN_TIME, name=_TEXT_WITH_SURROGATES, value=_HOSTILE)
def test_otlp_json_with_extreme_times_keeps_the_good_span(
    fuzz_live: LiveReceiver, start: int, end: int, name: str, value: Any
) -> None:
    """A span with any 64-bit times, surrogate names and hostile attributes: the good sibling is always kept."""
    good = {"traceId": "ab" * 16, "spanId": "01" * 8, "name": "good", "startTimeUnixNano": "1", "endTimeUnixNano": "2"}
    odd = {
        "traceId": "ab" * 16,
        "spanId": "02" * 8,
        "name": name,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(end),
        "attributes": [{"key": "v", "value": {"stringValue": str(value)}}],
    }
    body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [good, odd]}]}]}, ensure_ascii=True).encode()
    response = httpx.post(
        f"{fuzz_live.url}/v1/traces", content=body, headers={"content-type": "application/json"}, timeout=30
    )
    assert response.status_code in (200, 400), response.text
    if response.status_code == 200:
        assert fuzz_live.get(f"/api/traces/{'ab' * 16}").status_code == 200


def test_the_receiver_still_stores_verifies_and_refolds_after_the_fuzzing(fuzz_live: LiveReceiver) -> None:
    """After every fuzzed request, a normal batch is stored, the ledger verifies and a refold finds no drift."""
    assert fuzz_live.post(simple_run().events).json()["accepted"] == 4
    answer = fuzz_live.get("/api/verify").json()
    assert answer["ok"] is True, answer
    drift = httpx.post(f"{fuzz_live.url}/api/rebuild", timeout=60).json()
    assert drift["clean"] is True, drift


@pytest.mark.parametrize(
    "path",
    [
        "/api/runs?workflow_id=%ED%A0%80",
        "/api/runs?offset=100000000000000000000000",
        "/api/viewer/runs?q=%ED%A0%80",
        "/api/viewer/runs?cursor=%ED%A0%80",
        "/api/viewer/runs?since=%ED%A0%80",
        "/api/viewer/summary?until=9999-12-31T23:59:59-01:00",
        "/api/runs/%ED%A0%80",
        "/api/viewer/runs/%ED%A0%80/attempts?offset=99999999999999999999",
        "/api/traces/%ED%A0%80",
    ],
)
def test_percent_encoded_surrogates_and_huge_numbers_in_urls(fuzz_live: LiveReceiver, path: str) -> None:
    """A URL carrying an encoded lone surrogate or a number past 64 bits is answered below 500."""
    assert httpx.get(f"{fuzz_live.url}{path}", timeout=30).status_code < 500


@pytest.mark.parametrize("path", ["/api/runs/abc%00", "/api/runs?workflow_id=a%00b", "/api/viewer/runs?q=%00"])
def test_a_nul_in_the_path_or_query_is_a_400_naming_where(fuzz_live: LiveReceiver, path: str) -> None:
    """No id or filter holds a NUL; the answer is the same 400 on every engine (PostgreSQL's driver raises on it)."""
    answer = httpx.get(f"{fuzz_live.url}{path}", timeout=30)
    assert answer.status_code == 400
    assert "NUL character" in answer.json()["error"]
