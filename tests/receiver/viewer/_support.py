"""Helpers of the viewer tests: a real receiver on 127.0.0.1 and runs built event by event."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from flowledger._wire import format_ts, new_event_id
from flowledger.receiver._config import ReceiverConfig
from tests._serve import serve_receiver

XSS = "<img src=x onerror=alert(1)>"
"""A value that would run script if any part of the viewer wrote it as HTML."""
_BATCH_EVENTS = 5_000


@dataclass
class LiveReceiver:
    """A receiver served by uvicorn on 127.0.0.1 in a thread, on a real SQLite file."""

    url: str
    db_path: Path
    server: uvicorn.Server
    thread: threading.Thread

    def post(self, events: list[dict[str, Any]]) -> None:
        """Send events to ``/v1/events`` in batches; every one must be accepted."""
        for start in range(0, len(events), _BATCH_EVENTS):
            part = events[start : start + _BATCH_EVENTS]
            answer = httpx.post(f"{self.url}/v1/events", json={"events": part}, timeout=60)
            answer.raise_for_status()
            body = answer.json()
            assert body["accepted"] + body["duplicates"] == len(part), body

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", params=params, timeout=30)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def start_receiver(config: ReceiverConfig) -> LiveReceiver:
    """Serve ``create_app(config)`` with uvicorn in a thread and wait until it answers."""
    url, server, thread = serve_receiver(config)
    return LiveReceiver(url, config.db_path, server, thread)


def _span() -> str:
    return secrets.token_hex(8)


@dataclass
class RunBuilder:
    """The events of one run, with times set explicitly (milliseconds after ``start_ns``)."""

    workflow_id: str = "order-intake"
    workflow_name: str = "Order intake"
    trigger: str = "manual"
    dry_run: bool = False
    start_ns: int = field(default_factory=time.time_ns)
    project: str | None = None
    run_id: str = field(default_factory=new_event_id)
    trace_id: str = field(default_factory=lambda: secrets.token_hex(16))
    producer_id: str = field(default_factory=new_event_id)
    events: list[dict[str, Any]] = field(default_factory=list)
    run_span: str = field(default_factory=_span)

    def ts(self, at_ms: float) -> str:
        return format_ts(self.start_ns + int(at_ms * 1_000_000))

    def _event(self, kind: str, data: dict[str, Any], at_ms: float) -> dict[str, Any]:
        event = {
            "v": 1,
            "event_id": new_event_id(),
            "kind": kind,
            "run_id": self.run_id,
            "seq": len(self.events),
            "ts": self.ts(at_ms),
            "producer_id": self.producer_id,
            "producer_seq": len(self.events),
            "project": self.project,
            "data": data,
        }
        self.events.append(event)
        return event

    def start(self, trigger_data: Any = None) -> RunBuilder:
        self._event(
            "run_started",
            {
                "workflow_id": self.workflow_id,
                "workflow_name": self.workflow_name,
                "workflow_version": "3",
                "trigger_type": self.trigger,
                "trigger_data": trigger_data if trigger_data is not None else {"order": 42},
                "dry_run": self.dry_run,
                "trace_id": self.trace_id,
                "span_id": self.run_span,
                "heartbeat_interval_s": 15.0,
            },
            0,
        )
        return self

    def node_started(
        self, node_id: str, *, at_ms: float, attempt: int = 1, item: int | None = None, input: Any = None
    ) -> str:
        span = _span()
        data: dict[str, Any] = {
            "node_id": node_id,
            "span_id": span,
            "parent_span_id": self.run_span,
            "attempt": attempt,
            "input": input if input is not None else {"node": node_id},
            "location": {"file": "shop/steps.py", "line": 10, "path": f"nodes.{node_id}"},
        }
        if item is not None:
            data["item"] = item
        self._event("node_started", data, at_ms)
        return span

    def node_finished(
        self,
        node_id: str,
        span: str,
        *,
        started_ms: float,
        duration_ms: float,
        status: str = "succeeded",
        attempt: int = 1,
        item: int | None = None,
        output: Any = None,
        error: dict[str, Any] | None = None,
    ) -> RunBuilder:
        data: dict[str, Any] = {
            "node_id": node_id,
            "span_id": span,
            "parent_span_id": self.run_span,
            "attempt": attempt,
            "status": status,
            "started_at": self.ts(started_ms),
            "duration_ms": duration_ms,
        }
        if item is not None:
            data["item"] = item
        if error is not None:
            data["error"] = error
        else:
            data["output"] = output if output is not None else {"node": node_id, "ok": True}
        self._event("node_finished", data, started_ms + duration_ms)
        return self

    def node(
        self,
        node_id: str,
        *,
        at_ms: float,
        duration_ms: float,
        status: str = "succeeded",
        attempt: int = 1,
        item: int | None = None,
        input: Any = None,
        output: Any = None,
        error: dict[str, Any] | None = None,
    ) -> RunBuilder:
        span = self.node_started(node_id, at_ms=at_ms, attempt=attempt, item=item, input=input)
        return self.node_finished(
            node_id,
            span,
            started_ms=at_ms,
            duration_ms=duration_ms,
            status=status,
            attempt=attempt,
            item=item,
            output=output,
            error=error,
        )

    def skipped(self, node_id: str, *, at_ms: float, reason: str = "upstream failed") -> RunBuilder:
        self._event(
            "node_finished",
            {
                "node_id": node_id,
                "span_id": _span(),
                "attempt": 1,
                "status": "skipped",
                "skip_reason": reason,
                "started_at": self.ts(at_ms),
                "duration_ms": 0,
            },
            at_ms,
        )
        return self

    def finish(
        self,
        status: str = "succeeded",
        *,
        at_ms: float,
        error: dict[str, Any] | None = None,
        cost_usd: float = 0.004,
        output: Any = None,
    ) -> RunBuilder:
        data: dict[str, Any] = {
            "status": status,
            "started_at": self.ts(0),
            "duration_ms": at_ms,
            "trace_id": self.trace_id,
            "span_id": self.run_span,
            "workflow_id": self.workflow_id,
            "output": output if output is not None else {"decision": "ship"},
            "cost": {"tokens": 1200, "tool_calls": 2, "external_requests": 1, "usd": cost_usd},
        }
        if error is not None:
            data["error"] = error
        self._event("run_finished", data, at_ms)
        return self


def typical_run(**kwargs: Any) -> RunBuilder:
    """fetch; price fails once and succeeds on retry; stock mapped over 3 items at once; notify skipped."""
    run = RunBuilder(**kwargs).start()
    run.node("fetch", at_ms=0, duration_ms=40)
    run.node(
        "price",
        at_ms=45,
        duration_ms=30,
        status="failed",
        error={"type": "TimeoutError", "message": "pricing service timed out", "stack": "Traceback ...\nTimeoutError"},
    )
    run.node("price", at_ms=80, duration_ms=25, attempt=2, output={"total": 99.5})
    for item in range(3):
        run.node("stock", at_ms=45 + item * 3, duration_ms=50 + item * 10, item=item, output={"sku": item})
    run.skipped("notify", at_ms=120, reason="when: predicate was false")
    return run.finish("succeeded", at_ms=130)


def failed_run(**kwargs: Any) -> RunBuilder:
    """fetch succeeds, price fails twice and fails the run, decide is skipped."""
    run = RunBuilder(**kwargs).start()
    run.node("fetch", at_ms=0, duration_ms=20)
    error = {"type": "ValueError", "message": "price broke: no list price for sku 7", "stack": "Traceback\nValueError"}
    run.node("price", at_ms=25, duration_ms=10, status="failed", error=error)
    run.node("price", at_ms=40, duration_ms=10, status="failed", attempt=2, error=error)
    run.skipped("decide", at_ms=55)
    return run.finish("failed", at_ms=60, error={**error, "node_id": "price"})
