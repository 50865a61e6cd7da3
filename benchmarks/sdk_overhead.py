"""Per-call overhead of a flowledger node, next to a bare call and a bare OTel span.

Run: ``.venv/bin/python benchmarks/sdk_overhead.py`` (or ``python3 tasks.py bench``).
It then runs ``exit_hold.py``: how long a process's exit is held with the
receiver down, next to the stock OpenTelemetry SDK.

All cases run in this one process, interleaved round by round so a noisy
machine affects them alike; each figure is the median over rounds of the
mean cost per call within a round, in microseconds. The OTel reference is
the stock SDK: a TracerProvider with a BatchSpanProcessor whose exporter
discards, and the same input and output as JSON attributes; a second one
exports the same span for real with the stock OTLP/HTTP exporter to the
same stand-in receiver the flowledger node delivers to. The flowledger
node captures input and output (redaction and the 4 KiB cut included) and
hands its events to the background sender, which posts them to a local
HTTP server that answers 200 (in a process of its own, as a receiver would
be), with its own span export on or off.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import flowledger

ROUNDS = 41
CALLS_PER_ROUND = 400
WARM_UP_CALLS = 2000

ORDER = {
    "order_id": "A-10023",
    "customer": {"id": 881, "name": "Ann Example", "tier": "gold"},
    "lines": [{"sku": f"SKU-{i}", "qty": i, "price": 9.99 + i} for i in range(4)],
    "currency": "EUR",
    "api_key": "not-logged",
}


def price(order: dict[str, Any]) -> dict[str, Any]:
    total = sum(line["qty"] * line["price"] for line in order["lines"])
    return {"order_id": order["order_id"], "total": round(total, 2), "currency": order["currency"]}


class _Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class _Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keeps connections open, as the receiver (uvicorn) does

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b'{"accepted":0,"duplicates":0,"rejected":[]}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serve_sink() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    print(server.server_address[1], flush=True)
    server.serve_forever()


@contextmanager
def local_sink() -> Iterator[str]:
    """A receiver stand-in answering 200 to every POST, in its own process (as a receiver would be)."""
    sink = subprocess.Popen([sys.executable, __file__, "--sink"], stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None
        port = int(sink.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        sink.terminate()
        sink.wait(timeout=10)
        if sink.stdout is not None:
            sink.stdout.close()


def measure(cases: dict[str, Callable[[], None]]) -> dict[str, tuple[float, float]]:
    """Per case: the median wall time of one call, and the process CPU per call (all threads), in us.

    Cases alternate round by round, and every call is timed on its own, so a
    burst of the machine's noise (or of a background thread) moves a few
    samples, not the median. The CPU figure counts the process's every
    thread: for a flowledger node that includes its share of the sender's
    work (encoding, gzip, HTTP), which a discarding OTel exporter never does.
    """
    samples: dict[str, list[int]] = {name: [] for name in cases}
    cpu_ns: dict[str, int] = dict.fromkeys(cases, 0)
    clock, cpu = time.perf_counter_ns, time.process_time_ns
    for _ in range(ROUNDS):
        for name, fn in cases.items():
            out = samples[name]
            cpu_start = cpu()
            for _ in range(CALLS_PER_ROUND):
                start = clock()
                fn()
                out.append(clock() - start)
            cpu_ns[name] += cpu() - cpu_start
    calls = ROUNDS * CALLS_PER_ROUND
    return {name: (statistics.median(samples[name]) / 1000.0, cpu_ns[name] / calls / 1000.0) for name in cases}


def main() -> None:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_Discard()))
    tracer = provider.get_tracer("bench")

    def bare_call() -> None:
        price(ORDER)

    def otel_span() -> None:
        with tracer.start_as_current_span("price") as span:
            span.set_attribute("input", json.dumps(ORDER))
            span.set_attribute("output", json.dumps(price(ORDER)))

    node_price = flowledger.node(price)

    with local_sink() as url:
        # the same span, exported for real by the stock OTLP/HTTP exporter to the same stand-in receiver
        exporting = TracerProvider()
        exporting.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{url}/v1/traces")))
        exporting_tracer = exporting.get_tracer("bench")

        def otel_span_exported() -> None:
            with exporting_tracer.start_as_current_span("price") as span:
                span.set_attribute("input", json.dumps(ORDER))
                span.set_attribute("output", json.dumps(price(ORDER)))

        results: dict[str, tuple[float, float]] = {}
        for export in (False, True):
            flowledger.configure(endpoint=url, export_spans=export)  # spans to {url}/v1/traces, as by default
            with flowledger.run("bench"):
                for _ in range(WARM_UP_CALLS):  # the sender's worker and connection are up before timing
                    node_price(ORDER)
                    otel_span()
                    otel_span_exported()
                flowledger.flush(timeout_s=10)
                figures = measure(
                    {
                        "bare call": bare_call,
                        "bare OTel span": otel_span,
                        "bare OTel span, exported": otel_span_exported,
                        "node": node_price_call(node_price),
                    }
                )
            flowledger.flush(timeout_s=10)
            for name in ("bare call", "bare OTel span", "bare OTel span, exported"):
                results[name] = figures[name]
            results[f"flowledger node, capture on, span export {'on' if export else 'off'}"] = figures["node"]
        stats = flowledger.stats()
        exporting.shutdown()
    provider.shutdown()

    span_wall, span_cpu = results["bare OTel span"]
    print(f"{ROUNDS} rounds x {CALLS_PER_ROUND} calls per case, alternating; payload: an order of {len(ORDER)} keys")
    print(f"{'case':<52} {'median us/call':>15} {'ratio':>7} {'CPU us/call':>12} {'ratio':>7}")
    for name, (wall, cpu) in results.items():
        print(f"{name:<52} {wall:>15.2f} {wall / span_wall:>6.2f}x {cpu:>12.2f} {cpu / span_cpu:>6.2f}x")
    print(f"sender: enqueued={stats.get('enqueued')} sent={stats.get('sent')} dropped={stats.get('dropped')}")
    print("ratio: against the bare OTel span; target: a captured flowledger node costs no more (ratio <= 1.0)")
    print("CPU counts every thread of the process, so the node's figure includes delivering its records")
    print(flush=True)
    # the second figure of the SDK: how long exit is held with the receiver down
    subprocess.run([sys.executable, str(Path(__file__).with_name("exit_hold.py")), *sys.argv[1:]], check=True)


def node_price_call(node_price: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[[], None]:
    def call() -> None:
        node_price(ORDER)

    return call


if __name__ == "__main__":
    if sys.argv[1:] == ["--sink"]:
        _serve_sink()
    else:
        main()
