"""Query parameters shared by the API and the viewer, over a real socket: a bad time is a 400, never a 500."""

from __future__ import annotations

import pytest

from tests.receiver._support import LiveReceiver, RunEvents, simple_run


@pytest.mark.parametrize("route", ["/api/viewer/runs", "/api/viewer/summary"])
@pytest.mark.parametrize("name", ["since", "until"])
@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_time_that_overflows_in_utc_is_a_400_naming_the_parameter(
    live: LiveReceiver, route: str, name: str, value: str
) -> None:
    """since/until outside the years 1 to 9999 once made UTC are answered 400 with the parameter's name."""
    live.post(simple_run().events)
    answer = live.get(route, params={name: value})
    assert answer.status_code == 400
    assert name in answer.json()["error"]


@pytest.mark.parametrize("value", ["+5", " 5", "5_0", "\u0665", "5.0", "-", ""])
def test_a_whole_number_is_ascii_digits(live: LiveReceiver, value: str) -> None:
    """What Python's int() also reads (a sign, spaces, underscores, other scripts' digits) is a 400 naming the
    parameter, as the OpenAPI description's integer says; plain digits are taken."""
    live.post(simple_run().events)
    answer = live.get("/api/runs", params={"limit": value})
    assert answer.status_code == 400
    assert "limit" in answer.json()["error"]
    assert live.get("/api/runs", params={"limit": "5"}).status_code == 200


@pytest.mark.parametrize("length", [257, 1024])
def test_an_attribute_filter_takes_any_value_long_enough_to_be_indexed(live: LiveReceiver, length: int) -> None:
    """attr.KEY=VALUE takes a value as long as an indexed attribute value (1024 characters), past the 256 of
    other parameters, and finds its run; a longer one is a 400 naming attr.KEY, as is any other long parameter."""
    value = "x" * length
    run = RunEvents().start(attributes={"k": value}).node("fetch").finish()
    assert live.post(run.events + simple_run().events).status_code == 200
    answer = live.get("/api/runs", params={"attr.k": value})
    assert answer.status_code == 200, answer.text
    assert [found["run_id"] for found in answer.json()["runs"]] == [run.run_id]
    assert live.get("/api/runs", params={"attr.k": value[:-1]}).json()["runs"] == []
    too_long = live.get("/api/runs", params={"attr.k": "x" * 1025})
    assert too_long.status_code == 400
    assert "attr.k" in too_long.json()["error"]
    other = live.get("/api/runs", params={"workflow_id": value})
    assert other.status_code == 400
    assert "workflow_id" in other.json()["error"]
