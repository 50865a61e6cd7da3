"""`flowledger serve` with both ports: one port for OTLP/HTTP and OTLP/gRPC is a usage error, port 0 twice works."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from tests.otel._support import free_port
from tests.receiver.otlp._stock import make_spans

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0
POLL_S = 0.05


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWLEDGER_", "OTEL_"))}
    return {**env, **extra}


def _serve(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowledger", "serve", *args],
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
        env=env,
        check=False,
    )


@pytest.mark.parametrize("from_env", [False, True])
def test_the_same_port_for_http_and_grpc_is_one_usage_line(tmp_path: Path, from_env: bool) -> None:
    """--port P with --grpc-port P (or FLOWLEDGER_RECEIVER_GRPC_PORT=P) names both and exits 2 before serving."""
    port = free_port()
    db = tmp_path / "rx.db"
    if from_env:
        source = "FLOWLEDGER_RECEIVER_GRPC_PORT"
        result = _serve(["--db", str(db), "--port", str(port)], _env(FLOWLEDGER_RECEIVER_GRPC_PORT=str(port)))
    else:
        source = "--grpc-port"
        result = _serve(["--db", str(db), "--port", str(port), "--grpc-port", str(port)], _env())
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: --port and {source} are both {port}: OTLP/HTTP and OTLP/gRPC need a port each; pass another {source}"
    ]
    assert not db.exists()


def _wait_for_line(log: Path, pattern: str, child: subprocess.Popen[str]) -> re.Match[str]:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        found = re.search(pattern, log.read_text(errors="replace"))
        if found:
            return found
        assert child.poll() is None, log.read_text(errors="replace")
        assert time.monotonic() < deadline, f"no {pattern!r} in: {log.read_text(errors='replace')}"
        time.sleep(POLL_S)


def test_port_0_for_both_takes_two_free_ports_that_both_answer(tmp_path: Path) -> None:
    """--port 0 --grpc-port 0 serves OTLP/HTTP and OTLP/gRPC on two different free ports, each answering."""
    log = tmp_path / "serve.log"
    args = ["serve", "--db", str(tmp_path / "rx.db"), "--port", "0", "--grpc-port", "0"]
    with log.open("w") as err:
        child = subprocess.Popen([sys.executable, "-m", "flowledger", *args], stderr=err, text=True, env=_env())
    try:
        http_port = int(_wait_for_line(log, r"flowledger receiver on http://127\.0\.0\.1:(\d+) ", child)[1])
        grpc_port = int(_wait_for_line(log, r"flowledger\.receiver\.grpc: OTLP/gRPC on 127\.0\.0\.1:(\d+)", child)[1])
        assert http_port != grpc_port
        assert httpx.get(f"http://127.0.0.1:{http_port}/healthz", timeout=10).status_code == 200
        spans, trace_id, _ids = make_spans()
        exporter = OTLPSpanExporter(endpoint=f"127.0.0.1:{grpc_port}", insecure=True)
        try:
            assert exporter.export(spans) is SpanExportResult.SUCCESS
        finally:
            exporter.shutdown()
        trace = httpx.get(f"http://127.0.0.1:{http_port}/api/traces/{trace_id}", timeout=10).json()
        assert trace["span_count"] == 2
        child.send_signal(signal.SIGINT)
        child.wait(timeout=STOP_TIMEOUT_S)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, log.read_text(errors="replace")
