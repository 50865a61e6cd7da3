"""OpenTelemetry bridge: node spans are current while nodes run, and apps' providers are used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context

import flowledger
from flowledger.instrument._otel import SpanScope, context_from_traceparent
from flowledger.receiver._config import ReceiverConfig
from flowledger.testing import CapturedEvents
from tests.otel._support import start_receiver, subprocess_env


def test_node_span_is_the_current_otel_span_while_it_runs(events: CapturedEvents) -> None:
    """Inside a node, the current OTel span context carries that node's span id and the run's trace id."""
    seen: dict[str, Any] = {}

    @flowledger.node
    def look(_: int) -> None:
        ctx = trace.get_current_span().get_span_context()
        seen["trace_id"] = f"{ctx.trace_id:032x}"
        seen["span_id"] = f"{ctx.span_id:016x}"
        seen["traceparent"] = flowledger.traceparent()
        seen["headers"] = flowledger.inject({})

    with flowledger.run("wf") as run:
        look(1)
    node = events.nodes("look")[0]["data"]
    assert seen["trace_id"] == run.trace_id
    assert seen["span_id"] == node["span_id"]
    assert seen["traceparent"] == f"00-{run.trace_id}-{node['span_id']}-01"
    assert seen["headers"]["traceparent"] == seen["traceparent"]
    assert not trace.get_current_span().get_span_context().is_valid


def test_each_node_span_takes_its_own_parents_trace_and_sampling(events: CapturedEvents) -> None:
    """Runs one after another: a node's current span has its run's trace id and the incoming sampling flag.

    The parent's fields are remembered from one node to the next, so this
    checks that nodes of the next run never reuse the previous run's.
    """
    seen: list[tuple[str, int, str]] = []

    @flowledger.node
    def look(_: int) -> None:
        ctx = trace.get_current_span().get_span_context()
        seen.append((f"{ctx.trace_id:032x}", int(ctx.trace_flags), f"{ctx.span_id:016x}"))

    incoming = {
        "0af7651916cd43dd8448eb211c80319c": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
        "4bf92f3577b34da6a3ce929d0e0e4736": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    }
    for traceparent in incoming.values():
        with flowledger.run("wf", traceparent=traceparent):
            look(1)
            look(2)
    spans = [node["data"]["span_id"] for node in events.nodes("look")]
    assert [trace_id for trace_id, _, _ in seen] == [trace_id for trace_id in incoming for _ in range(2)]
    assert [flags for _, flags, _ in seen] == [0, 0, 1, 1]
    assert [span_id for _, _, span_id in seen] == spans
    assert len(set(spans)) == 4


def test_a_node_keeps_the_rest_of_the_otel_context_while_it_runs(events: CapturedEvents) -> None:
    """Making the node's span current keeps what else the context held (baggage, other keys) and restores it after."""
    seen: dict[str, Any] = {}

    @flowledger.node
    def look(_: int) -> None:
        seen["baggage"] = baggage.get_baggage("tenant")
        seen["span_id"] = f"{trace.get_current_span().get_span_context().span_id:016x}"

    token = otel_context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        with flowledger.run("wf"):
            look(1)
        assert baggage.get_baggage("tenant") == "acme"
    finally:
        otel_context.detach(token)
    assert seen == {"baggage": "acme", "span_id": events.nodes("look")[0]["data"]["span_id"]}


def test_a_finished_nodes_span_object_is_let_go_while_its_event_waits_in_the_queue(
    configure: Callable[..., Any], tmp_path: Path
) -> None:
    """Once a node ends, its OTel span object is released; the queued event keeps only the ids it is written from."""
    configure(endpoint="http://127.0.0.1:9", batch_max_age_s=60.0, spool_dir=tmp_path / "spool")
    refs: list[weakref.ref[trace.Span]] = []

    @flowledger.node
    def look(_: int) -> None:
        refs.append(weakref.ref(trace.get_current_span()))

    with flowledger.run("wf"):
        look(1)
        assert flowledger.stats()["queued"] >= 1  # the node's event is still waiting for the worker
        assert refs[0]() is None
    flowledger.shutdown(timeout_s=0.1)


def test_run_continues_an_incoming_traceparent(events: CapturedEvents) -> None:
    """run(traceparent=...) joins the caller's trace as a child of the caller's span."""
    incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with flowledger.run("wf", traceparent=incoming) as run:
        pass
    started = events.of_kind("run_started")[0]["data"]
    assert run.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert started["parent_span_id"] == "b7ad6b7169203331"


def test_an_invalid_traceparent_starts_a_new_trace(events: CapturedEvents) -> None:
    """A malformed traceparent is ignored: the run starts a trace of its own."""
    with flowledger.run("wf", traceparent="garbage") as run:
        pass
    assert len(run.trace_id) == 32
    assert events.of_kind("run_started")[0]["data"]["parent_span_id"] is None


def test_flowledger_never_installs_a_global_tracer_provider(events: CapturedEvents) -> None:
    """Running workflows leaves the global TracerProvider as the application left it."""
    before = trace.get_tracer_provider()
    with flowledger.run("wf"):
        flowledger.node(lambda x: x)(1)
    assert trace.get_tracer_provider() is before


APP_PROVIDER_SCRIPT = r"""
import json
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
import flowledger
from flowledger.testing import capture_events

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
tracer = trace.get_tracer("app")

@flowledger.node
def fetch(x):
    with tracer.start_as_current_span("http GET"):
        return x

@flowledger.node
def broken(x):
    raise RuntimeError("no stock (password=hunter2)")

@flowledger.node
def call(x):
    flowledger.instrument.current_node().set_attribute("authorization", "Bearer sk-live-123")
    return x

with capture_events() as events:
    try:
        with flowledger.run("wf") as run:
            fetch(1)
            call(3)
            broken(2)
    except RuntimeError:
        pass
spans = {s.name: s for s in exporter.get_finished_spans()}
out = {
    name: {
        "span_id": f"{s.context.span_id:016x}",
        "trace_id": f"{s.context.trace_id:032x}",
        "parent": f"{s.parent.span_id:016x}" if s.parent else None,
        "status": s.status.status_code.name,
        "attrs": dict(s.attributes),
        "events": [e.name for e in s.events],
        "texts": [s.status.description, *(str(dict(e.attributes or {})) for e in s.events)],
    }
    for name, s in spans.items()
}
out["recorded"] = {e["data"]["node_id"]: e["data"]["span_id"] for e in events.nodes()}
out["run_span"] = run.span_id
out["otel_exported"] = sorted({bool(e["data"].get("otel_exported")) for e in events.of_kind("node_finished")})
print(json.dumps(out))
"""


def test_an_application_tracer_provider_gets_real_spans() -> None:
    """With the app's own provider, runs and nodes are real spans there, with parents, status and exceptions."""
    done = subprocess.run([sys.executable, "-c", APP_PROVIDER_SCRIPT], capture_output=True, text=True, check=True)
    out = json.loads(done.stdout)
    run, fetch, http, broken = out["run wf"], out["fetch"], out["http GET"], out["broken"]
    assert fetch["span_id"] == out["recorded"]["fetch"]
    assert run["span_id"] == out["run_span"]
    assert fetch["parent"] == run["span_id"]
    assert http["parent"] == fetch["span_id"]
    assert broken["status"] == "ERROR"
    assert "exception" in broken["events"]
    assert run["status"] == "ERROR"
    for failed in (broken, run):  # the exception's text, redacted as its record is
        assert any("password=[REDACTED]" in text for text in failed["texts"] if text)
        assert not any("hunter2" in text for text in failed["texts"] if text)
    assert fetch["attrs"]["flowledger.node.id"] == "fetch"
    assert fetch["attrs"]["flowledger.workflow.id"] == "wf"
    assert len({s["trace_id"] for s in (run, fetch, http, broken)}) == 1
    assert out["call"]["attrs"]["authorization"] == "[REDACTED]"  # the app's exporter never sees the secret
    assert out["otel_exported"] == [True]  # the SDK's sender does not export a second copy


def test_otel_app_provider_off_keeps_the_sdks_own_spans() -> None:
    """With ``otel_app_provider`` off the app's provider gets no flowledger span; its own nest under the node."""
    env = {**os.environ, "FLOWLEDGER_OTEL_APP_PROVIDER": "0"}
    done = subprocess.run(
        [sys.executable, "-c", APP_PROVIDER_SCRIPT], capture_output=True, text=True, check=True, env=env
    )
    out = json.loads(done.stdout)
    app_spans = set(out) - {"recorded", "run_span", "otel_exported"}
    assert app_spans == {"http GET"}
    assert out["http GET"]["parent"] == out["recorded"]["fetch"]  # the node's span context was current
    assert out["otel_exported"] == [False]  # so the SDK's sender builds and exports the nodes' spans


def test_a_tracer_that_makes_no_spans_leaves_the_sdks_own_ids() -> None:
    """A tracer whose spans have the invalid (all-zero) context, whatever the reason: the SDK's own ids, not zeros."""
    tracer = trace.NoOpTracer()
    parent = context_from_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    root = SpanScope("run wf", None, None, tracer)
    child = SpanScope("step", parent, None, tracer)
    other = SpanScope("step", parent, None, tracer)
    for scope in (root, child, other):
        assert not scope.real  # so the SDK's own export (when on) sends it
        assert scope.trace_id != "0" * 32
        assert scope.span_id != "0" * 16
    assert child.trace_id == other.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert child.parent_span_id == "b7ad6b7169203331"
    assert child.span_id != other.span_id
    child.enter()
    try:
        assert flowledger.traceparent() == f"00-{child.trace_id}-{child.span_id}-01"
    finally:
        child.exit()


DISABLED_SDK_SCRIPT = r"""
import json
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
trace.set_tracer_provider(TracerProvider())
import flowledger

@flowledger.node
def a(x):
    return flowledger.traceparent()

@flowledger.node
def b(x):
    return x

with flowledger.run("disabledwf") as r:
    parents = [a(1), b(2), a(3)]
assert flowledger.flush(20)
print(json.dumps({"run_id": r.run_id, "trace_id": r.trace_id, "traceparents": parents}))
"""


@pytest.mark.parametrize("export_spans", [None, "1"])
def test_an_application_provider_under_otel_sdk_disabled_still_gets_distinct_ids(
    tmp_path: Path, export_spans: str | None
) -> None:
    """With the app's own TracerProvider and OTEL_SDK_DISABLED=true (a no-op tracer), runs and nodes keep the SDK's
    own ids: a real receiver stores every node, and with FLOWLEDGER_EXPORT_SPANS=1 the SDK exports their spans."""
    live = start_receiver(ReceiverConfig(db_path=tmp_path / "flowledger.db", sweep_interval_s=0))
    try:
        extra = {"FLOWLEDGER_EXPORT_SPANS": export_spans} if export_spans else {}
        env = subprocess_env(
            OTEL_SDK_DISABLED="true",
            FLOWLEDGER_ENDPOINT=live.url,
            FLOWLEDGER_SPOOL_DIR=str(tmp_path / "spool"),
            **extra,
        )
        done = subprocess.run(
            [sys.executable, "-c", DISABLED_SDK_SCRIPT], capture_output=True, text=True, env=env, timeout=120
        )
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout)
        assert out["trace_id"] != "0" * 32
        run = live.wait_for(f"/api/runs/{out['run_id']}", lambda run: len(run.get("nodes", [])) == 3)
        span_ids = [node["span_id"] for node in run["nodes"]]
        assert len(set(span_ids)) == 3
        assert "0" * 16 not in span_ids
        assert [p.split("-")[1] for p in out["traceparents"][::2]] == [out["trace_id"]] * 2  # a valid W3C header
        if export_spans:
            spans = live.wait_for(f"/api/traces/{out['trace_id']}", lambda t: t["span_count"] == 4)["spans"]
            assert sorted(s["span_id"] for s in spans if s["name"] != "run disabledwf") == sorted(span_ids)
    finally:
        live.stop()
