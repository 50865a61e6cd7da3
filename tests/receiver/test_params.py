"""Query parameters shared by the API and the viewer, over a real socket: a bad time is a 400, never a 500."""

from __future__ import annotations

import pytest

from tests.receiver._support import LiveReceiver, simple_run


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
