"""The SDK exporting its spans over OTLP/gRPC (``OTEL_EXPORTER_OTLP_PROTOCOL=grpc``), in real subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowledger.instrument._config import Settings
from flowledger.instrument.delivery._grpc_spans import grpc_endpoint, grpc_requested, readable_spans
from flowledger.instrument.delivery._otlp_spans import RunMemo, export_request, span_from_event
from flowledger.receiver._config import ReceiverConfig
from tests.otel._support import LiveReceiver, free_port, receiver_running, subprocess_env

APP = """
import sys

import flowledger


@flowledger.node
def fetch(order):
    return order["id"]


@flowledger.node
def charge(order):
    raise ValueError("card declined")


with flowledger.run("order-intake", name="Order intake") as run:
    fetch({"id": 1})
    try:
        charge({"id": 1})
    except ValueError:
        pass
print(run.run_id, run.trace_id)
sys.exit(0 if flowledger.flush(timeout_s=10.0) else 3)
"""


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveReceiver]:
    """A receiver serving OTLP/HTTP and OTLP/gRPC."""
    config = ReceiverConfig(db_path=tmp_path / "flowledger.db", sweep_interval_s=0, grpc_port=free_port())
    with receiver_running(config) as receiver:
        yield receiver


def _run_app(tmp_path: Path, app: str = APP, **env: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "grpc_app.py"
    script.write_text(textwrap.dedent(app), encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(script)],
        env=subprocess_env(FLOWLEDGER_EXPORT_SPANS="1", **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _over_grpc(live: LiveReceiver) -> dict[str, str]:
    """The environment of an app sending its events to ``live`` and its spans to its gRPC port."""
    return {
        "FLOWLEDGER_ENDPOINT": live.url,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{live.config.grpc_port}",
    }


@pytest.mark.parametrize("variable", ["OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"])
def test_sdk_spans_go_over_grpc_to_the_receiver(live: LiveReceiver, tmp_path: Path, variable: str) -> None:
    """With the protocol set to grpc, the run's and nodes' spans arrive on the gRPC port with links and errors."""
    done = _run_app(
        tmp_path,
        FLOWLEDGER_ENDPOINT=live.url,
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{live.config.grpc_port}",
        **{variable: "grpc"},
    )
    assert done.returncode == 0, done.stderr
    run_id, trace_id = done.stdout.split()
    doc = live.wait_for(
        f"/api/traces/{trace_id}", lambda d: d["span_count"] == 3 and all(s["run_id"] for s in d["spans"])
    )
    spans = {span["name"]: span for span in doc["spans"]}
    run_span, fetch, charge = spans["run order-intake"], spans["fetch"], spans["charge"]
    assert fetch["parent_span_id"] == charge["parent_span_id"] == run_span["span_id"]
    assert (fetch["run_id"], fetch["node_id"], fetch["attempt"]) == (run_id, "fetch", 1)
    assert charge["status"] == {"code": "error", "message": "ValueError: card declined"}
    assert charge["events"][0]["attributes"]["exception.type"] == "ValueError"
    assert (fetch["kind"], fetch["scope"]["name"]) == ("internal", "flowledger")
    assert fetch["attributes"]["flowledger.node.attempt"] == 1
    assert live.get("/api/otlp/stats").json()["spans"]["accepted"] == 3
    assert "warning" not in done.stderr.lower()


def test_spans_sent_by_the_exit_hook_go_over_grpc(live: LiveReceiver, tmp_path: Path) -> None:
    """A program that never flushes (a generated module's way) still exports over gRPC from the exit hook."""
    done = _run_app(tmp_path, APP.split("sys.exit(")[0], **_over_grpc(live))
    assert done.returncode == 0, done.stderr
    assert "span export failed" not in done.stderr
    _run_id, trace_id = done.stdout.split()
    assert live.wait_for(f"/api/traces/{trace_id}", lambda d: d["span_count"] == 3)


def test_without_the_grpc_exporter_a_warning_and_http_protobuf(live: LiveReceiver, tmp_path: Path) -> None:
    """Asked for grpc without the OTel gRPC exporter importable: one warning naming the extra; spans go over HTTP."""
    blocker = tmp_path / "blocked" / "sitecustomize.py"
    blocker.parent.mkdir()
    blocker.write_text(  # an environment without the exporter package: its import fails as when not installed
        "import sys\nsys.modules['opentelemetry.exporter.otlp.proto.grpc'] = None\n", encoding="utf-8"
    )
    done = _run_app(
        tmp_path,
        FLOWLEDGER_ENDPOINT=live.url,
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        PYTHONPATH=f"{blocker.parent}:{subprocess_env()['PYTHONPATH']}",
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("pip install 'flowledger[otlp-grpc]'") == 1
    _run_id, trace_id = done.stdout.split()
    assert live.wait_for(f"/api/traces/{trace_id}", lambda d: d["span_count"] == 3)


def test_grpc_is_requested_by_the_traces_variable_first() -> None:
    """The traces-specific protocol variable wins; only the value grpc (any case) asks for gRPC."""
    assert grpc_requested({"OTEL_EXPORTER_OTLP_PROTOCOL": " GRPC "})
    assert not grpc_requested(
        {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    )
    assert grpc_requested({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    assert not grpc_requested({})


def test_the_grpc_endpoint_is_the_otlp_one_or_the_receivers_host() -> None:
    """An OTLP endpoint is used without its HTTP /v1/traces path; without one, the receiver's host on port 4317."""
    assert grpc_endpoint(Settings(otlp_traces_endpoint="http://collector:4317/v1/traces")) == "http://collector:4317"
    assert grpc_endpoint(Settings(otlp_traces_endpoint="https://collector:4317")) == "https://collector:4317"
    assert grpc_endpoint(Settings(endpoint="http://flowledger:4318")) == "http://flowledger:4317"
    assert grpc_endpoint(Settings(endpoint="http://[::1]:4318")) == "http://[::1]:4317"


def test_readable_spans_keep_what_the_http_encoding_sends() -> None:
    """The ReadableSpan handed to the stock exporter has the ids, parent, kind, times, status and error event."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.trace import SpanKind, StatusCode

    event: dict[str, Any] = {
        "kind": "node_finished",
        "run_id": "r-1",
        "data": {
            "trace_id": "12" * 16,
            "span_id": "34" * 8,
            "parent_span_id": "56" * 8,
            "node_id": "fetch",
            "attempt": 2,
            "status": "failed",
            "error": {"type": "ValueError", "message": "bad", "stack": "Traceback ..."},
            "started_at": "2026-11-22T07:00:00Z",
            "duration_ms": 5,
            "cost": {"usd": 0.5, "tokens": 2**64},
        },
    }
    span = span_from_event(event, RunMemo())
    assert span is not None
    request = export_request([span], service_name="shop")
    (readable,) = readable_spans(request)
    assert readable.context is not None
    assert (readable.context.trace_id, readable.context.span_id) == (int("12" * 16, 16), int("34" * 8, 16))
    assert readable.parent is not None
    assert readable.parent.span_id == int("56" * 8, 16)
    assert readable.kind is SpanKind.INTERNAL
    assert (readable.status.status_code, readable.status.description) == (StatusCode.ERROR, "ValueError: bad")
    assert readable.events[0].attributes == {
        "exception.type": "ValueError",
        "exception.message": "bad",
        "exception.stacktrace": "Traceback ...",
    }
    assert readable.attributes is not None
    assert readable.attributes["flowledger.cost.tokens"] == str(2**64)
    assert readable.resource.attributes["service.name"] == "shop"
    official = json.loads(json.dumps(request))["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    encoded = encode_spans([readable]).resource_spans[0].scope_spans[0].spans[0]
    assert (encoded.start_time_unix_nano, encoded.end_time_unix_nano) == (
        int(official["startTimeUnixNano"]),
        int(official["endTimeUnixNano"]),
    )


SURROGATE_APP = """
import sys

import flowledger


@flowledger.node(id="fe\\ud800tch")
def fetch(order):
    return order["id"]


@flowledger.node
def plain(order):
    return order


with flowledger.run("order-intake", name="Order \\ud800 intake") as run:
    fetch({"id": 1})
    plain(2)
print(run.run_id, run.trace_id)
sys.exit(0 if flowledger.flush(timeout_s=10.0) else 3)
"""


def test_a_lone_surrogate_costs_no_span_over_grpc(live: LiveReceiver, tmp_path: Path) -> None:
    """A span string holding a lone surrogate (a node id here) goes as U+FFFD over gRPC too: every span arrives."""
    done = _run_app(tmp_path, SURROGATE_APP, **_over_grpc(live))
    assert done.returncode == 0, done.stderr
    _, trace_id = done.stdout.split()
    doc = live.wait_for(f"/api/traces/{trace_id}", lambda d: d["span_count"] == 3)
    assert sorted(span["name"] for span in doc["spans"]) == ["fe\ufffdtch", "plain", "run order-intake"]
    assert "span export failed" not in done.stderr
    assert "surrogates not allowed" not in done.stderr  # cleaned before the OTel exporter sees it
