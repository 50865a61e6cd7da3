"""Helpers of the OTel interop tests: real receivers on 127.0.0.1, stock OTel SDK spans, OTLP JSON."""

from __future__ import annotations

import base64
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from flowledger.receiver._config import ReceiverConfig
from tests._serve import serve_receiver

ROOT = Path(__file__).resolve().parents[2]
POLL_TIMEOUT_S = 15.0
POLL_INTERVAL_S = 0.05


@dataclass
class LiveReceiver:
    """A receiver served by uvicorn on 127.0.0.1 in a thread of the test process."""

    url: str
    config: ReceiverConfig
    server: uvicorn.Server
    thread: threading.Thread

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=30, **kwargs)

    def post(self, path: str, content: bytes, content_type: str, **headers: str) -> httpx.Response:
        return httpx.post(
            f"{self.url}{path}", content=content, headers={"content-type": content_type, **headers}, timeout=30
        )

    def trace(self, trace_id: str) -> dict[str, Any]:
        response = self.get(f"/api/traces/{trace_id}")
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def wait_for(self, path: str, ready: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """Poll a GET route until ``ready(json)`` holds; fail after POLL_TIMEOUT_S."""
        deadline = time.monotonic() + POLL_TIMEOUT_S
        last: Any = None
        while time.monotonic() < deadline:
            response = self.get(path)
            if response.status_code == 200:
                last = response.json()
                if ready(last):
                    return dict(last)
            else:
                last = response.text
            time.sleep(POLL_INTERVAL_S)
        raise AssertionError(f"{path} never became ready; last answer: {last!r}")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_receiver(config: ReceiverConfig, *, port: int = 0) -> LiveReceiver:
    """Serve ``create_app(config)`` with uvicorn in a thread and wait until it answers (on ``port``, 0: a free one)."""
    url, server, thread = serve_receiver(config, port=port)
    return LiveReceiver(url, config, server, thread)


@contextmanager
def receiver_running(config: ReceiverConfig, *, port: int = 0) -> Iterator[LiveReceiver]:
    """A live receiver for the duration of the block (on ``port``, 0: a free one)."""
    receiver = start_receiver(config, port=port)
    try:
        yield receiver
    finally:
        receiver.stop()


def stock_provider(service_name: str = "stock-app") -> tuple[TracerProvider, InMemorySpanExporter]:
    """A stock OTel SDK TracerProvider (not installed globally) whose finished spans are kept in memory."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider, memory


def _hex_ids(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: base64.b64decode(value).hex() if key in {"traceId", "spanId", "parentSpanId"} else _hex_ids(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_hex_ids(item) for item in node]
    return node


def otlp_json(spans: list[ReadableSpan]) -> dict[str, Any]:
    """The OTLP/HTTP JSON form of stock SDK spans (stock protobuf encoder, hex ids as the spec wants)."""
    return dict(_hex_ids(json_format.MessageToDict(encode_spans(spans))))


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: no FLOWLEDGER_/OTEL_ variables leak in; src and the repo importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWLEDGER_", "OTEL_"))}
    paths = [str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    if "FLOWLEDGER_SPOOL_DIR" in os.environ:  # the session's spool folder (tests/conftest.py), never the repository
        env["FLOWLEDGER_SPOOL_DIR"] = os.environ["FLOWLEDGER_SPOOL_DIR"]
    env.update(extra)
    return env


def run_events(
    trace_id: str, run_span: str, node_span: str, *, workflow_id: str = "order-intake"
) -> tuple[str, list[dict[str, Any]]]:
    """A run id and the wire events of a run with one node ``fetch``, as an SDK would emit them."""
    from flowledger._wire import format_ts, new_event_id

    run_id, producer = new_event_id(), new_event_id()
    start_ns = time.time_ns()
    events: list[dict[str, Any]] = []

    def add(kind: str, data: dict[str, Any], offset_ms: int) -> None:
        seq = len(events)
        events.append(
            {
                "v": 1,
                "event_id": new_event_id(),
                "kind": kind,
                "run_id": run_id,
                "seq": seq,
                "ts": format_ts(start_ns + offset_ms * 1_000_000),
                "producer_id": producer,
                "producer_seq": seq,
                "data": data,
            }
        )

    started = format_ts(start_ns)
    node_started = format_ts(start_ns + 1_000_000)
    ids = {"trace_id": trace_id, "span_id": run_span}
    workflow = {"workflow_id": workflow_id, "workflow_name": "Order intake", "trigger_type": "manual", "dry_run": False}
    add("run_started", {**workflow, **ids}, 0)
    node = {"node_id": "fetch", "span_id": node_span, "parent_span_id": run_span, "trace_id": trace_id, "attempt": 1}
    add("node_started", node, 1)
    add("node_finished", {**node, "status": "succeeded", "started_at": node_started, "duration_ms": 2.0}, 3)
    finished = {"status": "succeeded", "started_at": started, "duration_ms": 4.0, "workflow_id": workflow_id, **ids}
    add("run_finished", finished, 4)
    return run_id, events
