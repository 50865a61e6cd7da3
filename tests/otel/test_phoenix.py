"""A real OTLP backend nobody here wrote: Arize Phoenix, run offline on 127.0.0.1 in a subprocess.

Phoenix is not a project dependency (it brings about 120 packages): the
README's test command installs it into a virtual environment of its own,
``.venv-phoenix``, and names that interpreter in ``FLOWLEDGER_PHOENIX_PYTHON``.
Without it (or with ``arize-phoenix`` importable here) the tests use this
interpreter, and they skip, saying why, when Phoenix is nowhere.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowledger.receiver._config import ReceiverConfig
from tests.otel._processes import generate_module, run_once
from tests.otel._support import LiveReceiver, free_port, receiver_running

PHOENIX_START_TIMEOUT_S = 180.0
PHOENIX_POLL_TIMEOUT_S = 30.0


def _phoenix_python() -> str | None:
    """The interpreter that can run Phoenix: FLOWLEDGER_PHOENIX_PYTHON, or this one if it has Phoenix."""
    named = os.environ.get("FLOWLEDGER_PHOENIX_PYTHON", "")
    if named and Path(named).exists():
        return named
    return sys.executable if importlib.util.find_spec("phoenix") is not None else None


PHOENIX_PYTHON = _phoenix_python()

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(400),
    pytest.mark.skipif(PHOENIX_PYTHON is None, reason="arize-phoenix is not installed (tasks.py test installs it)"),
]

WORKFLOW = """
flowledger: 1
workflow: {id: phoenix-check, name: Phoenix check, version: "7"}
trigger: {type: manual}
output: echo
nodes:
  - id: prepare
    call: tests.otel.steps:prepare
  - id: echo
    call: tests.otel.steps:echo
    needs: [prepare]
  - id: refuse
    call: tests.otel.steps:fail
    needs: [prepare]
    on_error: continue
"""


@pytest.fixture(scope="module")
def phoenix_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """``phoenix serve`` on free local ports with a fresh working dir; yields its base URL and its OTLP/gRPC port."""
    work = tmp_path_factory.mktemp("phoenix")
    port, grpc_port = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PHOENIX_"))},
        "PHOENIX_WORKING_DIR": str(work),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(grpc_port),
        "PHOENIX_TELEMETRY_ENABLED": "false",
    }
    log = work / "phoenix.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [str(PHOENIX_PYTHON), "-c", "import sys; from phoenix.server.main import main; sys.exit(main())", "serve"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + PHOENIX_START_TIMEOUT_S
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Phoenix did not start: {log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)
        yield url, grpc_port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def phoenix(phoenix_server: tuple[str, int]) -> str:
    """The base URL of the module's Phoenix (UI, REST API and OTLP/HTTP)."""
    return phoenix_server[0]


def phoenix_spans(phoenix: str, trace_id: str, count: int) -> dict[str, dict[str, Any]]:
    """Phoenix's own view (REST API) of the spans of one trace, by name, once ``count`` arrived."""
    deadline = time.monotonic() + PHOENIX_POLL_TIMEOUT_S
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        answer = httpx.get(f"{phoenix}/v1/projects/default/spans", params={"limit": 1000}, timeout=10)
        if answer.status_code == 200:
            found = [s for s in answer.json()["data"] if s["context"]["trace_id"] == trace_id]
            if len(found) >= count:
                return {span["name"]: span for span in found}
        time.sleep(0.25)
    raise AssertionError(f"Phoenix has {len(found)} of {count} spans of trace {trace_id}: {found}")


def check_workflow_spans(spans: dict[str, dict[str, Any]], run: dict[str, Any]) -> None:
    """The run -> node parent links, flowledger.* attributes and the failed node's error, as Phoenix shows them."""
    run_span = spans["run phoenix-check"]
    assert run_span["parent_id"] is None
    for node_id in ("prepare", "echo", "refuse"):
        span = spans[node_id]
        assert span["parent_id"] == run_span["context"]["span_id"]
        assert span["attributes"]["flowledger.node.id"] == node_id
        assert span["attributes"]["flowledger.run.id"] == run["run_id"]
        assert span["attributes"]["flowledger.workflow.id"] == "phoenix-check"
        assert span["attributes"]["flowledger.workflow.version"] == "7"
    nodes = {node["node_id"]: node for node in run["nodes"]}
    assert {name: spans[name]["context"]["span_id"] for name in nodes} == {
        name: node["span_id"] for name, node in nodes.items()
    }
    assert run_span["attributes"]["flowledger.status"] == "succeeded"
    assert run_span["attributes"]["flowledger.trigger"] == "manual"
    refuse = spans["refuse"]
    assert refuse["status_code"] == "ERROR"
    assert "ValueError" in refuse["status_message"]
    (event,) = refuse["events"]
    assert event["name"] == "exception"
    assert event["attributes"]["exception.type"] == "ValueError"
    assert spans["echo"]["status_code"] == "UNSET"


def _finished_run(receiver: LiveReceiver, workflow_id: str) -> dict[str, Any]:
    listing = receiver.wait_for(
        f"/api/runs?workflow_id={workflow_id}", lambda d: any(r["status"] != "running" for r in d["runs"])
    )
    run: dict[str, Any] = receiver.get(f"/api/runs/{listing['runs'][0]['run_id']}").json()
    return run


def test_generated_workflow_spans_reach_phoenix_through_the_receiver(phoenix: str, tmp_path: Path) -> None:
    """A generated workflow reports to the receiver, which forwards its spans to Phoenix: links and attributes hold."""
    config = ReceiverConfig(db_path=tmp_path / "front.db", sweep_interval_s=0, forward_endpoint=phoenix)
    module = generate_module(tmp_path, "phoenix_check", WORKFLOW)
    with receiver_running(config) as receiver:
        done = run_once(module, json.dumps({"n": 1}), FLOWLEDGER_ENDPOINT=receiver.url, FLOWLEDGER_EXPORT_SPANS="1")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"echo": {"n": 2}}
        run = _finished_run(receiver, "phoenix-check")
        stats = receiver.wait_for("/api/otlp/stats", lambda d: d["forwarding"]["items_sent"] >= 4)
    assert (stats["forwarding"]["failed"], stats["forwarding"]["dropped"]) == (0, 0)
    check_workflow_spans(phoenix_spans(phoenix, run["trace_id"], 4), run)


def test_stock_sdk_spans_reach_phoenix_through_the_receiver(phoenix: str, tmp_path: Path) -> None:
    """Spans a stock OTel SDK exports to the receiver (protobuf) arrive in Phoenix with their parent link."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    from tests.otel._support import stock_provider

    provider, memory = stock_provider("stock-via-flowledger")
    tracer = provider.get_tracer("tests.otel")
    with tracer.start_as_current_span("outer"), tracer.start_as_current_span("inner") as inner:
        inner.set_attribute("order.id", 42)
    spans = list(memory.get_finished_spans())
    provider.shutdown()
    trace_id = f"{spans[0].context.trace_id:032x}"
    config = ReceiverConfig(db_path=tmp_path / "front.db", sweep_interval_s=0, forward_endpoint=phoenix)
    with receiver_running(config) as receiver:
        exporter = OTLPSpanExporter(endpoint=f"{receiver.url}/v1/traces")
        assert exporter.export(spans).name == "SUCCESS"
        exporter.shutdown()  # type: ignore[no-untyped-call]  # the OTel SDK leaves it unannotated
        receiver.wait_for("/api/otlp/stats", lambda d: d["forwarding"]["sent"] == 1)
    seen = phoenix_spans(phoenix, trace_id, 2)
    assert seen["inner"]["parent_id"] == seen["outer"]["context"]["span_id"]
    assert seen["inner"]["attributes"]["order.id"] == 42


def test_generated_workflow_spans_reach_phoenix_directly(phoenix: str, receiver: LiveReceiver, tmp_path: Path) -> None:
    """With OTEL_EXPORTER_OTLP_ENDPOINT set to Phoenix, the SDK exports there itself (http/protobuf by default)."""
    module = generate_module(tmp_path, "phoenix_check", WORKFLOW)
    done = run_once(
        module,
        json.dumps({"n": 1}),
        FLOWLEDGER_ENDPOINT=receiver.url,
        FLOWLEDGER_EXPORT_SPANS="1",
        OTEL_EXPORTER_OTLP_ENDPOINT=phoenix,
    )
    assert done.returncode == 0, done.stderr
    run = _finished_run(receiver, "phoenix-check")
    check_workflow_spans(phoenix_spans(phoenix, run["trace_id"], 4), run)
    assert receiver.get("/api/otlp/stats").json()["spans"]["accepted"] == 0  # spans went to Phoenix only


def test_generated_workflow_spans_reach_phoenix_over_grpc(
    phoenix_server: tuple[str, int], receiver: LiveReceiver, tmp_path: Path
) -> None:
    """With OTEL_EXPORTER_OTLP_PROTOCOL=grpc the SDK exports to Phoenix's OTLP/gRPC port through the OTel exporter."""
    phoenix, grpc_port = phoenix_server
    module = generate_module(tmp_path, "phoenix_check", WORKFLOW)
    done = run_once(
        module,
        json.dumps({"n": 2}),
        FLOWLEDGER_ENDPOINT=receiver.url,
        FLOWLEDGER_EXPORT_SPANS="1",
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{grpc_port}",
    )
    assert done.returncode == 0, done.stderr
    run = _finished_run(receiver, "phoenix-check")
    check_workflow_spans(phoenix_spans(phoenix, run["trace_id"], 4), run)
    assert receiver.get("/api/otlp/stats").json()["spans"]["accepted"] == 0  # spans went to Phoenix only
