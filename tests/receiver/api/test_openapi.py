"""Schemathesis against a real receiver: no 5xx, and every response matches the OpenAPI description."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowledger.receiver._config import ReceiverConfig
from flowledger.receiver.api._openapi import openapi_document
from flowledger.receiver.api._routes_query import EXPORT_PARAMS, LIST_PARAMS
from flowledger.receiver.store._views import RunPageCursor
from tests.receiver._support import simple_run, start_receiver

_A_CURSOR = RunPageCursor("2026-01-31T08:00:00.000000Z", "0190ab00-0000-7000-8000-000000000000").encode()


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[schemathesis.BaseSchema]:
    """The OpenAPI document served by a live receiver holding a few runs."""
    config = ReceiverConfig(db_path=tmp_path_factory.mktemp("openapi") / "flowledger.db", sweep_interval_s=0)
    live = start_receiver(config)
    for _ in range(3):
        live.post(simple_run().events)
    try:
        yield schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    finally:
        live.stop()


@pytest.mark.slow
def test_api_conforms_to_its_openapi_description(api_schema: schemathesis.BaseSchema) -> None:
    """Generated requests to every operation never get a 5xx, and each response matches its documented shape."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/events", "/api/runs", "/api/runs/{run_id}", "/healthz"}
    strategy = st.one_of(*(op.as_strategy() for op in operations))

    @given(case=strategy)
    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case: schemathesis.Case) -> None:
        if case.query and "cursor" in case.query:
            # An opaque token the receiver made: any other text is rightly a 400.
            case.query["cursor"] = _A_CURSOR
        case.call_and_validate()

    check()


@pytest.mark.parametrize(("path", "taken"), [("/api/runs", LIST_PARAMS), ("/api/export", EXPORT_PARAMS)])
def test_openapi_lists_exactly_the_parameters_a_route_takes(path: str, taken: tuple[str, ...]) -> None:
    """The parameters OpenAPI documents are the ones the route accepts (any other is a 400)."""
    documented = {p["name"] for p in openapi_document()["paths"][path]["get"]["parameters"]}
    assert documented == set(taken)
