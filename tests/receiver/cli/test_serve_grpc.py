"""``flowledger serve --grpc-port``: a real receiver process serving OTLP/gRPC, its clean stop and its clean errors."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from tests.otel._support import free_port
from tests.receiver.otlp._stock import make_spans

START_TIMEOUT_S = 60.0


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("FLOWLEDGER_", "OTEL_"))}


def test_serve_with_a_grpc_port_takes_stock_grpc_exports_and_stops_cleanly(tmp_path: Path) -> None:
    """serve --grpc-port: the stock gRPC exporter's spans are stored; SIGINT stops both ports, exit 0, no error."""
    port, grpc_port = free_port(), free_port()
    args = ["serve", "--db", str(tmp_path / "f.db"), "--port", str(port), "--grpc-port", str(grpc_port)]
    child = subprocess.Popen([sys.executable, "-m", "flowledger", *args], stderr=subprocess.PIPE, text=True, env=_env())
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert child.poll() is None, "the receiver exited"
            assert time.monotonic() < deadline, "the receiver did not start"
            time.sleep(0.05)
        spans, trace_id, _ids = make_spans()
        exporter = OTLPSpanExporter(endpoint=f"127.0.0.1:{grpc_port}", insecure=True)
        try:
            assert exporter.export(spans) is SpanExportResult.SUCCESS
        finally:
            exporter.shutdown()
        trace = httpx.get(f"http://127.0.0.1:{port}/api/traces/{trace_id}", timeout=10).json()
        assert trace["span_count"] == 2
        child.send_signal(signal.SIGINT)
        _out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, err
    assert "error" not in err.lower()
    assert "Traceback" not in err
    assert err.splitlines()[1] == f"OTLP/gRPC on 127.0.0.1:{grpc_port}"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", grpc_port))  # the gRPC port was given back


def test_a_busy_grpc_port_is_one_error_line(tmp_path: Path) -> None:
    """serve --grpc-port BUSY prints one line naming the gRPC port and exits 1 before serving anything."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        grpc_port = busy.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "flowledger",
                "serve",
                "--db",
                str(tmp_path / "f.db"),
                "--port",
                "0",
                "--grpc-port",
                str(grpc_port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=_env(),
            check=False,
        )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: cannot listen for OTLP/gRPC on 127.0.0.1:{grpc_port}: address already in use; "
        "stop what uses it or pass another --grpc-port"
    ]


def test_without_grpcio_the_grpc_port_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """In an environment without grpcio (its import blocked), --grpc-port names the extra to install and exits 2."""
    code = (
        "import sys; sys.modules['grpc'] = None\n"
        "from flowledger.cli import main\n"
        f"main(['serve', '--db', {str(tmp_path / 'f.db')!r}, '--port', '0', '--grpc-port', '0'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=_env(), check=False
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --grpc-port needs grpcio; install the grpc extra: pip install 'flowledger[grpc]'"
    ]
    assert not (tmp_path / "f.db").exists()
