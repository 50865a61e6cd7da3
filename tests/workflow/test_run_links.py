"""Links between runs across HTTP: an http node names its run in W3C baggage; an http trigger records it as parent."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from types import ModuleType

import httpx
import pytest

from flowledger._run_context import baggage_with_run_id, run_id_from_baggage
from flowledger._wire import new_event_id
from flowledger.testing import CapturedEvents
from flowledger.workflow import execute

Build = Callable[..., ModuleType]

CALLER = """
flowledger: 1
workflow: {id: caller}
nodes:
  - id: notify
    http: {url: "http://callee.test/orders", headers: {baggage: "tenant=acme"}}
"""
CALLEE = """
flowledger: 1
workflow: {id: callee}
trigger: {type: http, http: {path: /orders}}
nodes:
  - {id: check, call: "tests.workflow.nodes:is_positive"}
"""


def test_an_http_node_names_its_run_in_baggage(build: Build, events: CapturedEvents) -> None:
    """The request of an http node carries baggage flowledger.run_id=<the run>, beside the definition's entries."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=True)

    asyncio.run(execute(build(CALLER).WORKFLOW, 3, transport=httpx.MockTransport(answer)))
    run_id = events.of_kind("run_started")[0]["run_id"]
    assert seen[0].headers["baggage"] == f"tenant=acme,flowledger.run_id={run_id}"
    assert run_id_from_baggage(seen[0].headers["baggage"]) == run_id


def test_an_http_trigger_records_the_calling_run_as_parent(build: Build, events: CapturedEvents) -> None:
    """A run started over HTTP with the caller's run id in baggage (no run current here) names it as parent."""
    module = build(CALLEE)
    caller = new_event_id()

    async def go(baggage: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=module.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://callee.test") as client:
            return await client.post("/orders", json=5, headers={"baggage": baggage})

    # a fresh context: nothing of this test's own runs is current where the callee runs
    answer = contextvars.Context().run(asyncio.run, go(baggage_with_run_id("tenant=acme", caller)))
    assert answer.status_code == 200
    contextvars.Context().run(asyncio.run, go("flowledger.run_id=not-a-run"))
    first, second = events.of_kind("run_started")
    assert first["data"]["parent_run_id"] == caller
    assert "parent_run_id" not in second["data"]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("a=1, flowledger.run_id = 0192a3b4-0000-7000-8000-000000000001 ;p=1", "0192a3b4-0000-7000-8000-000000000001"),
        ("flowledger.run_id=0192A3B4-0000-7000-8000-000000000001", None),
        ("flowledger.run_id", None),
        ("x=" + "y" * 9000 + ",flowledger.run_id=0192a3b4-0000-7000-8000-000000000001", None),
    ],
)
def test_reading_the_run_id_from_baggage(header: str | None, expected: str | None) -> None:
    """Only a lowercase run id under flowledger.run_id is taken, from a header of bounded length."""
    assert run_id_from_baggage(header) == expected
