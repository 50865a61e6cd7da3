"""Helpers for the sender tests: events, settings, a recording HTTP receiver, child processes.

``Recorder`` is a small HTTP server on 127.0.0.1 (a thread) that answers
``POST /v1/events`` and ``POST /v1/traces`` and follows a script of
behaviours, one per request, then answers normally: a status code (with
headers), ``HANG`` (read the request, answer nothing until released),
``CLOSE`` (read the headers, then close the connection without answering).

Run as ``python -m tests.instrument.delivery._sender_support COMMAND ...`` it is the
child process of the subprocess tests (see :func:`child_main`).
"""

from __future__ import annotations

import atexit
import base64
import gzip
import json
import os
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

import httpx
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from flowledger._wire import format_ts, new_event_id
from flowledger.instrument._config import Settings
from flowledger.instrument.delivery._sender import Sender

REPO_ROOT: Final = Path(__file__).resolve().parents[3]
HANG: Final = "hang"
CLOSE: Final = "close"
HANG_LIMIT_S: Final = 30.0


# --- events and settings ---------------------------------------------------


def make_event(seq: int = 0, *, run_id: str | None = None, **data: Any) -> dict[str, Any]:
    """A valid heartbeat event (wire format v1) with ``data`` merged in."""
    return {
        "v": 1,
        "event_id": new_event_id(),
        "kind": "heartbeat",
        "run_id": run_id or new_event_id(),
        "seq": seq,
        "ts": format_ts(time.time_ns()),
        "producer_id": "01930000-0000-7000-8000-000000000000",
        "producer_seq": seq,
        "data": dict(data),
    }


def make_settings(spool_dir: Path, endpoint: str = "http://127.0.0.1:9", **changes: Any) -> Settings:
    """Settings for a test: its own spool, short timeouts, few retries."""
    values: dict[str, Any] = {
        "endpoint": endpoint,
        "spool_dir": spool_dir,
        "request_timeout_s": 1.0,
        "max_retries": 2,
        "batch_max_age_s": 0.02,
    }
    values.update(changes)
    return Settings(**values)


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout_s`` passes; return whether it held."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


def spooled_events(spool_dir: Path) -> list[dict[str, Any]]:
    """Every event waiting in a spool folder: in ready files, and in files a replay has claimed for the moment."""
    events: list[dict[str, Any]] = []
    for path in sorted(spool_dir.glob("*.json.gz*")):
        try:
            events.extend(json.loads(gzip.decompress(path.read_bytes()))["events"])
        except FileNotFoundError:
            continue  # delivered and deleted meanwhile
    return events


class RecordingSender(Sender):
    """A Sender whose retry waits are recorded instead of slept, and whose probes come quickly."""

    probe_min_s = 0.01
    probe_max_s = 0.05

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.waits: list[float] = []

    def _backoff_wait(self, delay_s: float) -> bool:
        self.waits.append(delay_s)
        return not self._stop.is_set()


PROTOBUF: Final = "application/x-protobuf"


def decode_traces(body: bytes, content_type: str) -> dict[str, Any]:
    """An OTLP/HTTP traces request body (JSON or protobuf, not compressed) in its OTLP JSON form.

    Protobuf is parsed by the stock ``opentelemetry-proto`` classes; ids come back as hex, as in OTLP JSON.
    """
    if content_type.split(";")[0].strip() != PROTOBUF:
        doc: dict[str, Any] = json.loads(body)
        return doc
    message = ExportTraceServiceRequest()
    message.ParseFromString(body)
    doc = json_format.MessageToDict(message, use_integers_for_enums=True)
    for resource in doc.get("resourceSpans", []):
        for scope in resource.get("scopeSpans", []):
            for span in scope.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return doc


# --- transport seam ----------------------------------------------------------


@dataclass
class MockReceiver:
    """An httpx.MockTransport handler that records requests and plays a script of status codes."""

    script: list[int] = field(default_factory=list)
    too_large: Callable[[list[dict[str, Any]]], bool] = lambda events: False
    rejected: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] = lambda events: []
    requests: list[httpx.Request] = field(default_factory=list)
    bodies: list[list[dict[str, Any]]] = field(default_factory=list)
    traces: list[dict[str, Any]] = field(default_factory=list)
    traces_status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    seen: Callable[[httpx.Request], None] = lambda request: None
    down: bool = False
    """While true, every request to /v1/events is answered 503."""

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.seen(request)
        if request.url.path == "/v1/traces":
            self.traces.append(decode_traces(gzip.decompress(request.content), request.headers["Content-Type"]))
            return httpx.Response(self.traces_status, json={})
        events = json.loads(gzip.decompress(request.content))["events"]
        if self.down:
            return httpx.Response(503, text="down")
        if self.script:
            status = self.script.pop(0)
            if status != 200:
                return httpx.Response(status, headers=self.headers, text="scripted")
        if self.too_large(events):
            return httpx.Response(413, text="too large")
        self.bodies.append(events)
        rejected = self.rejected(events)
        return httpx.Response(
            200,
            json={
                "accepted": len(events) - len(rejected),
                "duplicates": 0,
                "rejected": [{"index": events.index(e), "error": "bad"} for e in rejected],
            },
        )

    def event_ids(self) -> list[str]:
        return [e["event_id"] for body in self.bodies for e in body]

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


# --- a real receiver on a socket -------------------------------------------------


class Recorder:
    """A recording receiver on 127.0.0.1 that runs in a thread."""

    def __init__(self, script: list[int | str] | None = None, *, port: int = 0) -> None:
        self.script: list[int | str] = list(script or [])
        self.retry_after: str | None = None
        self.too_large: Callable[[list[dict[str, Any]]], bool] = lambda events: False
        self.rejected_index: set[int] = set()
        self.events: list[dict[str, Any]] = []
        self.traces: list[tuple[str, bytes]] = []
        """Each traces request: its Content-Type and its body, decompressed."""
        self.traces_rejected = 0
        """``partial_success.rejected_spans`` of each answer to a traces request."""
        self.requests = 0
        self.headers_seen: list[set[str]] = []
        """The header names (lowercased) of each request."""
        self.release = threading.Event()
        self.hanging = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Recorder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def event_ids(self) -> list[str]:
        with self._lock:
            return [e["event_id"] for e in self.events]

    def wait_for(self, count: int, timeout_s: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if len(self.event_ids()) >= count:
                return True
            time.sleep(0.01)
        return False

    def _next(self) -> int | str:
        with self._lock:
            self.requests += 1
            return self.script.pop(0) if self.script else 200

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                with recorder._lock:
                    recorder.headers_seen.append({name.lower() for name in self.headers})
                behaviour = recorder._next()
                if behaviour == CLOSE:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if behaviour == HANG:
                    recorder.hanging.set()
                    recorder.release.wait(HANG_LIMIT_S)
                    self.close_connection = True
                    return
                if isinstance(behaviour, int) and behaviour != 200:
                    headers = {"Retry-After": recorder.retry_after} if recorder.retry_after else {}
                    self._answer(behaviour, {"error": "scripted"}, headers)
                    return
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path.partition("?")[0] == "/v1/traces":
                    self._answer_traces(body)
                    return
                events = json.loads(body)["events"]
                if recorder.too_large(events):
                    self._answer(413, {"error": "too large"})
                    return
                rejected = [
                    i for i, e in enumerate(events) if e.get("data", {}).get("index") in recorder.rejected_index
                ]
                with recorder._lock:
                    recorder.events.extend(e for i, e in enumerate(events) if i not in rejected)
                answer = {
                    "accepted": len(events) - len(rejected),
                    "duplicates": 0,
                    "rejected": [{"index": i, "error": "invalid"} for i in rejected],
                }
                self._answer(200, answer)

            def _answer_traces(self, body: bytes) -> None:
                """Answer in the request's own content type, as OTLP/HTTP requires."""
                content_type = self.headers.get("Content-Type", "")
                with recorder._lock:
                    recorder.traces.append((content_type, body))
                rejected = recorder.traces_rejected
                if content_type == PROTOBUF:
                    answer = ExportTraceServiceResponse()
                    if rejected:
                        answer.partial_success.rejected_spans = rejected
                    self._answer(200, {}, data=answer.SerializeToString(), content_type=PROTOBUF)
                else:
                    self._answer(200, {"partialSuccess": {"rejectedSpans": rejected}} if rejected else {})

            def _answer(
                self,
                status: int,
                doc: dict[str, Any],
                headers: dict[str, str] | None = None,
                *,
                data: bytes | None = None,
                content_type: str = "application/json",
            ) -> None:
                if data is None:
                    data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        return Handler


@contextmanager
def recorder(script: list[int | str] | None = None, *, port: int = 0) -> Iterator[Recorder]:
    """A started Recorder, stopped afterwards; on ``port`` (0: a free one), to bring a receiver back where a test
    had it down (spooled batches replay only to the destination they were bound for)."""
    rec = Recorder(script, port=port).start()
    try:
        yield rec
    finally:
        rec.stop()


def port_of(url: str) -> int:
    """The port of a ``http://127.0.0.1:PORT`` URL."""
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


def closed_port_url() -> str:
    """The URL of a port on 127.0.0.1 where nothing listens (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def silent_listener() -> socket.socket:
    """A socket on 127.0.0.1 that accepts connections (backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


def child_env(**extra: str) -> dict[str, str]:
    """Environment for a child process that imports flowledger from this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT)])
    env.update(extra)
    return env


def child_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tests.instrument.delivery._sender_support", *args]


# --- child processes -----------------------------------------------------------------


def child_main(argv: list[str]) -> int:
    """Entry point of the child processes.

    - ``spool ENDPOINT SPOOL_DIR COUNT``: submit COUNT events, flush (the
      receiver is down, so they are spooled), print "spooled N", then wait
      to be killed.
    - ``replay ENDPOINT SPOOL_DIR``: flush (which replays the spool), print
      the stats as JSON, exit.
    - ``hold ENDPOINT SPOOL_DIR``: replay the spool against a receiver that
      hangs; print "claimed" once a spool file is claimed, wait to be killed.
    - ``exit ENDPOINT SPOOL_DIR COUNT``: submit COUNT events and return at
      once, leaving the bounded flush at exit to do its work.
    """
    command, endpoint, spool_dir = argv[0], argv[1], Path(argv[2])
    settings = make_settings(spool_dir, endpoint, max_retries=0, request_timeout_s=2.0)
    if command == "exit":
        settings = make_settings(spool_dir, endpoint, batch_max_age_s=0.2, request_timeout_s=2.0, max_retries=5)
    sender = Sender(settings)
    atexit.register(sender.shutdown, settings.exit_flush_s)  # as the pipeline does
    if command in ("spool", "exit"):
        run_id = new_event_id()
        for i in range(int(argv[3])):
            sender.submit(make_event(i, run_id=run_id, index=i), 300)
        if command == "exit":
            return 0
        sender.flush(5.0)
        print("spooled", sender.stats()["spooled"], flush=True)
        time.sleep(HANG_LIMIT_S)
        return 1
    if command == "hold":
        sender.replay()
        deadline = time.monotonic() + HANG_LIMIT_S
        while time.monotonic() < deadline:
            if any(".claimed-" in p.name for p in spool_dir.iterdir()):
                print("claimed", flush=True)
                break
            time.sleep(0.01)
        time.sleep(HANG_LIMIT_S)
        return 1
    ok = sender.flush(20.0)
    stats = sender.stats()
    stats["flush_ok"] = int(ok)
    print(json.dumps(stats), flush=True)
    return 0


def tally(ids: list[str]) -> Counter[str]:
    return Counter(ids)


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
