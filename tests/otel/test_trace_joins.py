"""One trace across the SDK's own spans, auto-instrumented libraries, and processes (real subprocesses)."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.otel._processes import generate_module, run_once, serving
from tests.otel._support import LiveReceiver, subprocess_env

pytestmark = pytest.mark.slow

SDK_APP = """
import sys

import httpx
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

import flowledger

url = sys.argv[1]
# The application's own OTel setup: httpx is auto-instrumented and its spans go out with the stock
# protobuf exporter. No global provider, so flowledger builds and sends its own spans.
provider = TracerProvider(resource=Resource.create({"service.name": "shop-http"}))
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=url + "/v1/traces")))
HTTPXClientInstrumentor().instrument(tracer_provider=provider)


@flowledger.node
def fetch(order):
    return httpx.get(url + "/healthz").status_code


with flowledger.run("order-intake", name="Order intake") as run:
    fetch({"id": 1})
print(run.run_id, run.trace_id)
ok = flowledger.flush(timeout_s=5.0)
provider.shutdown()
sys.exit(0 if ok else 3)
"""

CALLEE = """
flowledger: 1
workflow: {id: callee, name: Callee}
trigger: {type: http, http: {path: /callee}}
nodes:
  - id: echo
    call: tests.otel.steps:echo
"""

CALLER = """
flowledger: 1
workflow: {id: caller, name: Caller}
trigger: {type: manual}
nodes:
  - id: prepare
    call: tests.otel.steps:prepare
  - id: call_callee
    http: {method: POST, url: "CALLEE_URL/callee"}
    needs: [prepare]
"""


def _runs_of(receiver: LiveReceiver, workflow_id: str, count: int = 1) -> list[dict[str, Any]]:
    listing = receiver.wait_for(
        f"/api/runs?workflow_id={workflow_id}",
        lambda doc: sum(r["status"] != "running" for r in doc["runs"]) >= count,
    )
    return [receiver.get(f"/api/runs/{r['run_id']}").json() for r in reversed(listing["runs"])]


def _spans_by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {span["name"]: span for span in doc["spans"]}


@pytest.mark.parametrize("protocol", ["http/json", "http/protobuf"])
def test_sdk_spans_and_auto_instrumented_httpx_join_one_trace(
    receiver: LiveReceiver, tmp_path: Path, protocol: str
) -> None:
    """The SDK's spans (OTLP JSON or protobuf) and a stock-exported httpx span share a trace: run -> node -> GET."""
    script = tmp_path / "sdk_app.py"
    script.write_text(textwrap.dedent(SDK_APP), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script), receiver.url],
        env=subprocess_env(
            FLOWLEDGER_ENDPOINT=receiver.url, FLOWLEDGER_EXPORT_SPANS="1", OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=protocol
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    run_id, trace_id = done.stdout.split()
    doc = receiver.wait_for(
        f"/api/traces/{trace_id}",
        lambda d: d["span_count"] == 3 and all(s["run_id"] for s in d["spans"] if s["name"] != "GET"),
    )
    spans = _spans_by_name(doc)
    run_span, node_span, http_span = spans["run order-intake"], spans["fetch"], spans["GET"]
    assert run_span["parent_span_id"] is None
    assert node_span["parent_span_id"] == run_span["span_id"]
    assert http_span["parent_span_id"] == node_span["span_id"]
    assert doc["root_span_ids"] == [run_span["span_id"]]
    assert http_span["kind"] == "client"
    assert http_span["service_name"] == "shop-http"
    attrs = http_span["attributes"]
    assert attrs.get("http.response.status_code", attrs.get("http.status_code")) == 200  # new or old HTTP semconv
    assert (run_span["run_id"], run_span["node_id"]) == (run_id, None)
    assert (node_span["run_id"], node_span["node_id"], node_span["attempt"]) == (run_id, "fetch", 1)
    assert http_span["run_id"] is None
    assert doc["run_ids"] == [run_id]
    assert node_span["attributes"]["flowledger.workflow.id"] == "order-intake"
    run = receiver.get(f"/api/runs/{run_id}").json()
    assert run["trace_id"] == trace_id
    assert run["nodes"][0]["span_id"] == node_span["span_id"]
    # The SDK's own deliveries are never traced: the three spans above are all that arrived.
    stats = receiver.get("/api/otlp/stats").json()["spans"]
    assert stats["accepted"] == 3


def test_a_workflow_calling_another_over_http_is_one_trace(receiver: LiveReceiver, tmp_path: Path) -> None:
    """An http node injects traceparent; the http-triggered workflow it calls continues that trace."""
    env = {"FLOWLEDGER_ENDPOINT": receiver.url, "FLOWLEDGER_EXPORT_SPANS": "1"}
    callee = generate_module(tmp_path, "callee", CALLEE)
    with serving(callee, tmp_path / "callee.log", **env) as callee_url:
        caller = generate_module(tmp_path, "caller", CALLER.replace("CALLEE_URL", callee_url))
        done = run_once(caller, json.dumps({"n": 1}), **env)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"echo": {"n": 2}}
        (caller_run,) = _runs_of(receiver, "caller")
        (callee_run,) = _runs_of(receiver, "callee")
    assert caller_run["status"] == callee_run["status"] == "succeeded"
    assert callee_run["trigger_type"] == "http"
    trace_id = caller_run["trace_id"]
    assert callee_run["trace_id"] == trace_id
    doc = receiver.wait_for(
        f"/api/traces/{trace_id}", lambda d: d["span_count"] == 5 and all(s["run_id"] for s in d["spans"])
    )
    spans = _spans_by_name(doc)
    call_node = spans["call_callee"]
    assert spans["run callee"]["parent_span_id"] == call_node["span_id"]
    assert spans["echo"]["parent_span_id"] == spans["run callee"]["span_id"]
    assert call_node["parent_span_id"] == spans["run caller"]["span_id"]
    assert doc["root_span_ids"] == [spans["run caller"]["span_id"]]
    assert all(span["parent_found"] for span in doc["spans"] if span["parent_span_id"])
    assert set(doc["run_ids"]) == {caller_run["run_id"], callee_run["run_id"]}
    assert (spans["echo"]["run_id"], spans["echo"]["node_id"]) == (callee_run["run_id"], "echo")
    assert (call_node["run_id"], call_node["node_id"]) == (caller_run["run_id"], "call_callee")


def test_an_http_trigger_continues_the_callers_traceparent(receiver: LiveReceiver, tmp_path: Path) -> None:
    """A POST carrying a W3C traceparent starts a run inside that trace, under the caller's span."""
    env = {"FLOWLEDGER_ENDPOINT": receiver.url, "FLOWLEDGER_EXPORT_SPANS": "1"}
    callee = generate_module(tmp_path, "callee", CALLEE)
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    with serving(callee, tmp_path / "callee.log", **env) as callee_url:
        answer = httpx.post(
            f"{callee_url}/callee", json={"x": 1}, headers={"traceparent": f"00-{trace_id}-{parent}-01"}, timeout=30
        )
        assert answer.status_code == 200, answer.text
        run_id = answer.headers["x-flowledger-run-id"]
        doc = receiver.wait_for(f"/api/traces/{trace_id}", lambda d: d["span_count"] == 2 and d["run_ids"])
    assert doc["run_ids"] == [run_id]
    spans = _spans_by_name(doc)
    assert spans["run callee"]["parent_span_id"] == parent
    assert spans["run callee"]["parent_found"] is False
    assert doc["root_span_ids"] == [spans["run callee"]["span_id"]]
    assert spans["run callee"]["attributes"]["flowledger.trigger"] == "http"
