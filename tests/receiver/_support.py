"""Helpers of the receiver tests: realistic event sequences and real servers."""

from __future__ import annotations

import gzip
import json
import secrets
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from flowledger._wire import format_ts, new_event_id
from flowledger.receiver._config import ReceiverConfig
from tests._serve import serve_receiver

_BASE_NS = 1_790_000_000 * 1_000_000_000


@dataclass
class Producer:
    """One SDK process: its id and per-producer sequence."""

    producer_id: str = field(default_factory=new_event_id)
    seq: int = 0

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq - 1


def _span() -> str:
    return secrets.token_hex(8)


class RunEvents:
    """Builds the events of one run in the order an SDK would emit them."""

    def __init__(
        self, producer: Producer | None = None, *, workflow_id: str = "order-intake", project: str | None = None
    ) -> None:
        self.producer = producer or Producer()
        self.run_id = new_event_id()
        self.trace_id = secrets.token_hex(16)
        self.run_span = _span()
        self.workflow_id = workflow_id
        self.project = project
        self.seq = 0
        self.clock_ns = _BASE_NS + secrets.randbelow(10**15)
        self.events: list[dict[str, Any]] = []

    def _ts(self, advance_ms: float = 5.0) -> str:
        self.clock_ns += int(advance_ms * 1_000_000)
        return format_ts(self.clock_ns)

    def _event(self, kind: str, data: dict[str, Any], ts: str | None = None) -> dict[str, Any]:
        event = {
            "v": 1,
            "event_id": new_event_id(),
            "kind": kind,
            "run_id": self.run_id,
            "seq": self.seq,
            "ts": ts or self._ts(),
            "producer_id": self.producer.producer_id,
            "producer_seq": self.producer.next_seq(),
            "project": self.project,
            "data": data,
        }
        self.seq += 1
        self.events.append(event)
        return event

    def start(self, **extra: Any) -> RunEvents:
        self.started_at = self._ts()
        self._event(
            "run_started",
            {
                "workflow_id": self.workflow_id,
                "workflow_name": "Order intake",
                "workflow_version": "3",
                "trigger_type": "manual",
                "trigger_data": {"order": 42, "password": "[REDACTED]"},
                "dry_run": False,
                "trace_id": self.trace_id,
                "span_id": self.run_span,
                "heartbeat_interval_s": 15.0,
                **extra,
            },
            ts=self.started_at,
        )
        return self

    def node(
        self,
        node_id: str,
        *,
        status: str = "succeeded",
        item: int | None = None,
        attempt: int = 1,
        output: Any = None,
        cost: dict[str, Any] | None = None,
    ) -> RunEvents:
        span = _span()
        self.last_span = span
        started = self._ts()
        common = {"node_id": node_id, "span_id": span, "parent_span_id": self.run_span, "attempt": attempt}
        if item is not None:
            common["item"] = item
        self._event(
            "node_started",
            {**common, "input": {"node": node_id, "item": item}, "location": {"file": "shop/steps.py", "line": 10}},
            ts=started,
        )
        finished: dict[str, Any] = {**common, "status": status, "started_at": started, "duration_ms": 12.5}
        if status == "failed":
            finished["error"] = {"type": "ValueError", "message": f"{node_id} broke", "stack": "Traceback ..."}
        else:
            finished["output"] = output if output is not None else {"node": node_id, "ok": True}
        if cost:
            finished["cost"] = cost
        self._event("node_finished", finished, ts=self._ts(12.5))
        return self

    def skipped(self, node_id: str, reason: str = "upstream failed") -> RunEvents:
        ts = self._ts()
        self._event(
            "node_finished",
            {
                "node_id": node_id,
                "span_id": _span(),
                "attempt": 1,
                "status": "skipped",
                "skip_reason": reason,
                "started_at": ts,
                "duration_ms": 0,
            },
            ts=ts,
        )
        return self

    def logs(
        self, node_id: str, messages: list[str], *, level: int = 20, dropped_lines: int = 0, attempt: int = 1
    ) -> RunEvents:
        """A node_logs event for the last node's attempt, one record per message."""
        records = [
            {"ts": self._ts(0.1), "level": level, "level_name": "INFO", "logger": "shop.steps", "message": m}
            for m in messages
        ]
        data = {"node_id": node_id, "span_id": self.last_span, "attempt": attempt, "records": records}
        if dropped_lines:
            data["dropped_lines"], data["dropped_bytes"] = dropped_lines, dropped_lines * 10
        self._event("node_logs", data)
        return self

    def heartbeat(self, cost: dict[str, Any] | None = None) -> RunEvents:
        self._event("heartbeat", {"cost": cost} if cost else {})
        return self

    def finish(self, status: str = "succeeded", *, error_node: str | None = None) -> RunEvents:
        ts = self._ts()
        data: dict[str, Any] = {
            "status": status,
            "started_at": self.started_at,
            "duration_ms": (self.clock_ns - _parse_ns(self.started_at)) / 1e6,
            "trace_id": self.trace_id,
            "span_id": self.run_span,
            "workflow_id": self.workflow_id,
            "output": {"decision": "ship"},
            "cost": {"tokens": 1200, "tool_calls": 2, "external_requests": 1, "usd": 0.004},
        }
        if status != "succeeded":
            data["error"] = {"type": "ValueError", "message": "price broke", "node_id": error_node}
        self._event("run_finished", data, ts=ts)
        return self


def _parse_ns(ts: str) -> int:
    from flowledger._wire import parse_ts

    return int(parse_ts(ts).timestamp() * 1_000_000) * 1000


def typical_run(producer: Producer | None = None, **kwargs: Any) -> RunEvents:
    """A run with a retry, a mapped node, a skipped node, heartbeats and a failure."""
    run = RunEvents(producer, **kwargs).start()
    run.node("fetch").heartbeat({"tokens": 10, "tool_calls": 0, "external_requests": 1, "usd": 0.0})
    run.node("price", status="failed", attempt=1).node("price", attempt=2, cost={"tokens": 1200, "usd": 0.004})
    run.node("stock", item=0).node("stock", item=1)
    run.skipped("notify")
    run.heartbeat()
    return run.finish("failed", error_node="price")


def simple_run(producer: Producer | None = None, **kwargs: Any) -> RunEvents:
    """run_started, one node, run_finished."""
    return RunEvents(producer, **kwargs).start().node("fetch").finish()


def run_among_others(steps: int, between: int) -> tuple[RunEvents, list[dict[str, Any]]]:
    """A run of ``steps`` nodes, and a batch holding its events with ``between`` simple runs' events before each
    step's two (a run whose ledger entries lie far apart, as a long run's do on a busy receiver)."""
    run = RunEvents().start()
    for step in range(steps):
        run.node(f"step_{step}")
    events = run.events[:1]
    for step in range(steps):
        events += [e for _ in range(between) for e in simple_run().events] + run.events[1 + 2 * step : 3 + 2 * step]
    return run, events


@dataclass
class LiveReceiver:
    """A receiver served by uvicorn on 127.0.0.1 in a thread."""

    url: str
    db_path: Path
    server: uvicorn.Server
    thread: threading.Thread

    def post(self, events: list[dict[str, Any]], *, gzip_body: bool = False, **kwargs: Any) -> httpx.Response:
        body = json.dumps({"events": events}).encode()
        headers = {"content-type": "application/json", **kwargs.pop("headers", {})}
        if gzip_body:
            body = gzip.compress(body)
            headers["content-encoding"] = "gzip"
        return httpx.post(f"{self.url}/v1/events", content=body, headers=headers, timeout=30, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=30, **kwargs)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def free_socket() -> socket.socket:
    """A listening-ready socket bound to a free port on 127.0.0.1."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def start_receiver(config: ReceiverConfig, *, port: int = 0) -> LiveReceiver:
    """Serve ``create_app(config)`` with uvicorn in a thread and wait until it answers (on ``port``, 0: a free one)."""
    url, server, thread = serve_receiver(config, port=port)
    return LiveReceiver(url, config.db_path, server, thread)
