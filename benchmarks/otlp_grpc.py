"""OTLP ingest over gRPC next to OTLP/HTTP protobuf: spans, log records and metric points per second.

    python benchmarks/otlp_grpc.py [--batches 200] [--per-batch 500] [--repeat 5]

Starts ``flowledger serve --grpc-port`` on a fresh database (a real process on
127.0.0.1), builds the export requests *before* the clock starts, then sends
them one after another with the stock protocols: HTTP/protobuf (the
reference: ``POST /v1/<signal>``) and gRPC (the ``Export`` method of each
OTLP service), alternating ``--repeat`` times. It prints the median items/s
of each transport and their ratio. Every request stores new items (ids and
times differ), so both measure validation and the store, not duplicates.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 60.0
METHODS = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def traces_request(batch: int, size: int) -> bytes:
    request = trace_service_pb2.ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    resource.resource.attributes.add(key="service.name").value.string_value = "bench"
    spans = resource.scope_spans.add().spans
    for i in range(size):
        span = spans.add(name=f"step-{i % 10}", start_time_unix_nano=1_700_000_000_000_000_000 + i)
        span.trace_id = (batch * 1_000_003 + i // 10 + 1).to_bytes(16, "big")
        span.span_id = (batch * 1_000_003 + i + 1).to_bytes(8, "big")
        span.end_time_unix_nano = span.start_time_unix_nano + 1_000_000
        span.attributes.add(key="attempt").value.int_value = i % 3
    return bytes(request.SerializeToString())


def logs_request(batch: int, size: int) -> bytes:
    request = logs_service_pb2.ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    for i in range(size):
        record = records.add(time_unix_nano=1_700_000_000_000_000_000 + batch * size + i, severity_number=9)
        record.trace_id = (batch + 1).to_bytes(16, "big")
        record.span_id = (i + 1).to_bytes(8, "big")
        record.body.string_value = f"line {i} of batch {batch}"
    return bytes(request.SerializeToString())


def metrics_request(batch: int, size: int) -> bytes:
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add(name="queue_depth")
    for i in range(size):
        point = metric.gauge.data_points.add(time_unix_nano=1_700_000_000_000_000_000 + batch, as_int=i)
        point.attributes.add(key="queue").value.string_value = f"q{i % 50}-{i}"
    return bytes(request.SerializeToString())


BUILDERS: dict[str, Callable[[int, int], bytes]] = {
    "traces": traces_request,
    "logs": logs_request,
    "metrics": metrics_request,
}


def serve(db: Path, port: int, grpc_port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWLEDGER_", "OTEL_"))}
    env["FLOWLEDGER_RECEIVER_OTLP_METRIC_SERIES_MAX"] = "10000000"
    command = [sys.executable, "-m", "flowledger", "serve", "--db", str(db), "--port", str(port)]
    proc = subprocess.Popen(
        [*command, "--grpc-port", str(grpc_port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the receiver did not start")
        time.sleep(0.05)


def run_http(url: str, signal: str, bodies: list[bytes]) -> float:
    with httpx.Client(timeout=60) as client:
        start = time.perf_counter()
        for body in bodies:
            answer = client.post(f"{url}/v1/{signal}", content=body, headers={"content-type": "application/x-protobuf"})
            answer.raise_for_status()
        return time.perf_counter() - start


def run_grpc(target: str, signal: str, bodies: list[bytes]) -> float:
    with grpc.insecure_channel(target) as channel:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHODS[signal])
        start = time.perf_counter()
        for body in bodies:
            call(body, timeout=60)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--per-batch", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        port, grpc_port = free_port(), free_port()
        proc = serve(Path(work) / "bench.db", port, grpc_port)
        try:
            url, target = f"http://127.0.0.1:{port}", f"127.0.0.1:{grpc_port}"
            print(f"{args.batches} requests of {args.per_batch} items each, {args.repeat} rounds; median items/s")
            print(f"{'signal':8} {'HTTP/protobuf (reference)':>26} {'gRPC':>12} {'gRPC / HTTP':>12}")
            batch = 0
            for signal, build in BUILDERS.items():
                rates: dict[str, list[float]] = {"http": [], "grpc": []}
                for _ in range(args.repeat):
                    for transport in ("http", "grpc"):
                        bodies = [build(batch + n, args.per_batch) for n in range(args.batches)]
                        batch += args.batches
                        send: Any = run_http if transport == "http" else run_grpc
                        elapsed = send(url if transport == "http" else target, signal, bodies)
                        rates[transport].append(args.batches * args.per_batch / elapsed)
                http, over_grpc = statistics.median(rates["http"]), statistics.median(rates["grpc"])
                print(f"{signal:8} {http:>26,.0f} {over_grpc:>12,.0f} {over_grpc / http:>12.2f}")
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
