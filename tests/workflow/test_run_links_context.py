"""An http node adds its run's id to the OpenTelemetry context's baggage rather than writing the header over it: the
context's baggage entries and tracestate go along, and an instrumented httpx client (whose inject replaces the
headers) still carries the run's id to the workflow it calls."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
from opentelemetry import baggage, context, trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

from flowledger._run_context import run_id_from_baggage
from flowledger.testing import CapturedEvents
from flowledger.workflow import execute
from tests.otel._processes import generate_module, serving
from tests.otel._support import subprocess_env
from tests.receiver._support import LiveReceiver

Build = Callable[..., ModuleType]

RECORDS_TIMEOUT_S = 60.0
"""How long the receiver may take to have the runs of the child processes (a bound for a poll, not a measure)."""

CALLER = """
flowledger: 1
workflow: {id: caller}
nodes:
  - id: notify
    http: {url: "URL/callee", headers: {baggage: "from=definition"}}
"""
CALLEE = """
flowledger: 1
workflow: {id: callee}
trigger: {type: http, http: {path: /callee}}
nodes:
  - {id: echo, call: tests.otel.steps:echo}
"""
INSTRUMENTED_CALLER = """
import asyncio
import sys

from opentelemetry import baggage, context
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

import flowledger
from flowledger.workflow import execute_run

sys.path.insert(0, sys.argv[1])
import caller

HTTPXClientInstrumentor().instrument()  # its inject writes the request's baggage from the context
context.attach(baggage.set_baggage("tenant", "acme"))
result = asyncio.run(execute_run(caller.WORKFLOW, {"n": 1}))
print(result.run_id, result.status.value)
sys.exit(0 if flowledger.flush(timeout_s=30.0) else 3)
"""


def test_an_http_node_keeps_the_context_s_baggage_and_tracestate(build: Build, events: CapturedEvents) -> None:
    """With baggage tenant=acme and tracestate vendor=v1 in the context, the request carries both, beside the
    definition's baggage entry and flowledger.run_id=<the run>."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=True)

    caller = build(CALLER.replace("URL", "http://callee.test"))
    outer = SpanContext(0x1234567890ABCDEF1234567890ABCDEF, 0x1111111111111111, True, TraceFlags(0x01))
    outer = SpanContext(outer.trace_id, outer.span_id, True, TraceFlags(0x01), TraceState([("vendor", "v1")]))
    ctx = trace.set_span_in_context(NonRecordingSpan(outer), baggage.set_baggage("tenant", "acme"))
    token = context.attach(ctx)
    try:
        asyncio.run(execute(caller.WORKFLOW, 3, transport=httpx.MockTransport(answer)))
    finally:
        context.detach(token)
    run_id = events.of_kind("run_started")[0]["run_id"]
    (request,) = seen
    entries = [entry.strip() for entry in request.headers["baggage"].split(",")]
    assert entries[0] == "from=definition"
    assert set(entries[1:]) == {"tenant=acme", f"flowledger.run_id={run_id}"}
    assert run_id_from_baggage(request.headers["baggage"]) == run_id
    assert request.headers["tracestate"] == "vendor=v1"
    assert request.headers["traceparent"].split("-")[1] == f"{outer.trace_id:032x}"


def _run_of(live: LiveReceiver, workflow_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + RECORDS_TIMEOUT_S
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        runs = live.get(f"/api/runs?workflow_id={workflow_id}").json()["runs"]
        if runs and runs[0]["status"] != "running":
            return dict(live.get(f"/api/runs/{runs[0]['run_id']}").json())
        time.sleep(0.1)
    raise AssertionError(f"no finished run of {workflow_id} in time: {run}")


def test_an_instrumented_client_carries_the_run_id_to_the_called_workflow(live: LiveReceiver, tmp_path: Path) -> None:
    """HTTPXClientInstrumentor on and baggage tenant=acme attached: a generated module's http node calls an
    http-triggered generated module (real processes, real sockets), whose run records the caller's as its parent."""
    env = {"FLOWLEDGER_ENDPOINT": live.url, "FLOWLEDGER_EXPORT_SPANS": "0"}
    callee = generate_module(tmp_path, "callee", CALLEE)
    with serving(callee, tmp_path / "callee.log", **env) as callee_url:
        generate_module(tmp_path, "caller", CALLER.replace("URL", callee_url))
        script = tmp_path / "instrumented.py"
        script.write_text(textwrap.dedent(INSTRUMENTED_CALLER), encoding="utf-8")
        done = subprocess.run(
            [sys.executable, str(script), str(tmp_path)],
            env=subprocess_env(**env),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        caller_run_id, status = done.stdout.split()
        assert status == "succeeded", done.stderr
        callee_run = _run_of(live, "callee")
    assert callee_run["status"] == "succeeded"
    assert callee_run["parent_run_id"] == caller_run_id
