"""Per-call overhead of a flowledger node, next to a bare call and a bare OTel span.

Run: ``.venv/bin/python benchmarks/sdk_overhead.py`` (or ``python3 tasks.py bench``).
It then runs ``exit_hold.py`` (not with ``--calls-only``): how long a process's exit is held with the
receiver down, next to the stock OpenTelemetry SDK.

All cases run in this one process, interleaved block by block (a block is
``CALLS_PER_ROUND`` calls of one case) so a noisy machine affects them
alike. Three figures per case, in microseconds:

- median per call: every call is timed on its own and the median of all
  those single calls is taken (``measure()``), so a burst of the machine's
  noise or of a background thread moves a few samples, not the figure;
- median of block means: the wall time of a block's calls divided by its
  calls, the median over blocks; it includes the calls a background thread
  slowed down, which the first figure leaves out;
- CPU per call including delivery: the process's CPU time (every thread)
  over a block and the flush that ends it, divided by the block's calls.
  Each block ends by flushing what its case handed to a background thread
  (the sender's queue, the span processor), so delivery is charged to the
  case that caused it and not to whichever case runs next.

The OTel reference is the stock SDK: a TracerProvider with a
BatchSpanProcessor whose exporter discards, and the same input and output
as JSON attributes; a second one exports the same span for real with the
stock OTLP/HTTP exporter to the same stand-in receiver the flowledger node
delivers to. The flowledger node captures input and output (redaction and
the 4 KiB cut included) and hands its events to the background sender,
which posts them to a local HTTP server that answers 200 (in a process of
its own, as a receiver would be), with its own span export off or on.

``benchmarks/sdk_instructions.py`` counts the same cases in instructions
(callgrind), a figure that does not move with the machine's load.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class Case:
    """One measured case: a call, and what hands its background work over (flush), run after each block."""

    call: Callable[[], None]
    flush: Callable[[], object] = lambda: None


@dataclass(frozen=True, slots=True)
class Figures:
    """A case's figures, in microseconds per call (see the module's docstring)."""

    median_call_us: float
    median_block_mean_us: float
    cpu_us: float


def measure(cases: dict[str, Case]) -> dict[str, Figures]:
    """Per case: the median of single calls, the median of block means, and CPU per call including delivery."""
    samples: dict[str, list[int]] = {name: [] for name in cases}
    block_means: dict[str, list[float]] = {name: [] for name in cases}
    cpu_ns: dict[str, int] = dict.fromkeys(cases, 0)
    clock, cpu = time.perf_counter_ns, time.process_time_ns
    for _ in range(ROUNDS):
        for name, case in cases.items():
            out, fn = samples[name], case.call
            cpu_start = cpu()
            block_wall = 0
            for _ in range(CALLS_PER_ROUND):
                start = clock()
                fn()
                took = clock() - start
                out.append(took)
                block_wall += took
            case.flush()  # this block's background work is done before the next case runs
            cpu_ns[name] += cpu() - cpu_start
            block_means[name].append(block_wall / CALLS_PER_ROUND)
    calls = ROUNDS * CALLS_PER_ROUND
    return {
        name: Figures(
            median_call_us=statistics.median(samples[name]) / 1000.0,
            median_block_mean_us=statistics.median(block_means[name]) / 1000.0,
            cpu_us=cpu_ns[name] / calls / 1000.0,
        )
        for name in cases
    }


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

    def node_call() -> None:
        node_price(ORDER)

    def flush_node() -> None:
        flowledger.flush(timeout_s=10)

    with local_sink() as url:
        # the same span, exported for real by the stock OTLP/HTTP exporter to the same stand-in receiver
        exporting = TracerProvider()
        exporting.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{url}/v1/traces")))
        exporting_tracer = exporting.get_tracer("bench")

        def otel_span_exported() -> None:
            with exporting_tracer.start_as_current_span("price") as span:
                span.set_attribute("input", json.dumps(ORDER))
                span.set_attribute("output", json.dumps(price(ORDER)))

        runs: dict[bool, dict[str, Figures]] = {}
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
                        "bare call": Case(bare_call),
                        "bare OTel span": Case(otel_span, provider.force_flush),
                        "bare OTel span, exported": Case(otel_span_exported, exporting.force_flush),
                        "node": Case(node_call, flush_node),
                    }
                )
            flowledger.flush(timeout_s=10)
            figures[f"flowledger node, span export {'on' if export else 'off'}"] = figures.pop("node")
            runs[export] = figures
        stats = flowledger.stats()
        exporting.shutdown()
    provider.shutdown()

    print(f"{ROUNDS} blocks x {CALLS_PER_ROUND} calls per case, alternating; payload: an order of {len(ORDER)} keys")
    print("per call: median of single calls | block mean: median over blocks of (block wall / calls)")
    print("CPU: process CPU (all threads) over each block and its flush, per call: delivery included")
    print(f"{'case':<40} {'per call':>9} {'ratio':>6} {'block mean':>11} {'ratio':>6} {'CPU':>8} {'ratio':>6}")
    for export, figures in runs.items():
        print(f"-- flowledger span export {'on' if export else 'off'}; the references measured beside it:")
        ref = figures["bare OTel span"]
        for name, f in figures.items():
            print(
                f"{name:<40} {f.median_call_us:>9.2f} {f.median_call_us / ref.median_call_us:>5.2f}x"
                f" {f.median_block_mean_us:>11.2f} {f.median_block_mean_us / ref.median_block_mean_us:>5.2f}x"
                f" {f.cpu_us:>8.2f} {f.cpu_us / ref.cpu_us:>5.2f}x"
            )
    print("figures in us; each ratio is against the bare OTel span of the same run (second row of its group)")
    print(f"sender: enqueued={stats.get('enqueued')} sent={stats.get('sent')} dropped={stats.get('dropped')}")
    print("targets: node CPU with delivery <= 1.0x the bare span with export on; median per call <= 0.6x")
    print(flush=True)
    if "--calls-only" in sys.argv:
        return
    # the second figure of the SDK: how long exit is held with the receiver down
    subprocess.run([sys.executable, str(Path(__file__).with_name("exit_hold.py")), *sys.argv[1:]], check=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--sink"]:
        _serve_sink()
    else:
        main()
