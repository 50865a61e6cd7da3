"""Per-call cost of a flowledger node beside its peers: Logfire, Langfuse and DBOS, each in a process of its own.

Run: ``.venv/bin/python benchmarks/peers.py [--runs 3] [--rounds 15] [--calls 200]``.

The peers are installed, pinned, into a virtual environment of their own
(``.venv-peers`` beside the project, made on the first run together with
this project), as the Phoenix interop tests do with Phoenix: they bring
many packages the project does not use. Each peer runs in a child process
of that environment which measures, interleaved block by block as
``sdk_overhead.py`` does, the same function ``price(order)``:

- a bare OpenTelemetry span with the input and output as JSON attributes
  (stock SDK, BatchSpanProcessor, an exporter that discards): the reference
  every ratio is taken against, measured in the same process;
- the same span exported by the stock OTLP/HTTP exporter;
- a ``@flowledger.node`` with default settings (input and output captured,
  events and spans delivered);
- the peer: Logfire's ``@logfire.instrument``, Langfuse's ``@observe``, or
  DBOS's ``@DBOS.step`` called inside a ``@DBOS.workflow`` (DBOS records each
  step's output in its SQLite system database; a block of calls is one
  workflow).

Everything is delivered to a local stand-in: an HTTP server in another
process that answers every request with 200 (no internet). Logfire is
given a token and that server as its base URL, Langfuse keys and that
server as its host. In Logfire's process a flowledger node is also measured
in a run started after ``logfire.configure()`` installed its global
TracerProvider, so the node's spans are real spans of that provider (see
docs/otel.md), and once more with ``otel_app_provider=False``, the setting
that keeps flowledger's own span contexts and export instead.

Each block ends by flushing what its case handed to background threads,
and the process CPU (all threads) over the block and its flush is charged
to that case. Figures: the median of single calls and the CPU per call,
in microseconds; over ``--runs`` runs (a fresh process each), the median
and the range of each ratio.
"""

from __future__ import annotations

import argparse
import contextvars
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PEERS_VENV = ROOT / ".venv-peers"
REQUIREMENTS = (
    "logfire==5.4.0",
    "langfuse==5.2.0",
    "dbos==3.4.0",
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-http",
)
PEERS = ("logfire", "langfuse", "dbos")
WARM_UP_CALLS = 300

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


# --- the stand-in receiver ------------------------------------------------------


class _Ok(BaseHTTPRequestHandler):
    """Answers 200 to everything: events, OTLP exports, Logfire's and Langfuse's own calls."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b'{"accepted":0,"duplicates":0,"rejected":[]}' if self.path.endswith("/v1/events") else b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET = do_PUT = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def local_sink() -> Iterator[str]:
    """The stand-in, in a process of its own; yields its base URL."""
    sink = subprocess.Popen([sys.executable, __file__, "--sink"], stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None
        yield f"http://127.0.0.1:{int(sink.stdout.readline())}"
    finally:
        sink.terminate()
        sink.wait(timeout=10)
        if sink.stdout is not None:
            sink.stdout.close()


def _serve_sink() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    print(server.server_address[1], flush=True)
    server.serve_forever()


# --- the peers' environment -----------------------------------------------------


def peers_python() -> Path | None:
    """The peers' interpreter, installing them (and this project) first if need be; None if that failed."""
    python = PEERS_VENV / ("Scripts" if os.name == "nt" else "bin") / "python"
    stamp = PEERS_VENV / ".installed"
    want = "\n".join(REQUIREMENTS)
    if stamp.exists() and stamp.read_text() == want and python.exists():
        return python
    print(f"installing {', '.join(REQUIREMENTS[:3])} into {PEERS_VENV.name}/", flush=True)
    if not python.exists():
        venv.EnvBuilder(with_pip=True).create(PEERS_VENV)
    done = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", *REQUIREMENTS, "-e", str(ROOT)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:  # pip's chatter (its index warnings name this machine's settings) only when it failed
        print(done.stdout + done.stderr, file=sys.stderr)
        return None
    stamp.write_text(want)
    return python


# --- one peer's process ---------------------------------------------------------

Block = Callable[[int], list[int]]
"""Makes n calls of a case and returns each call's wall time in ns."""


def _calls(fn: Callable[[], object]) -> Block:
    def block(n: int) -> list[int]:
        clock = time.perf_counter_ns
        out = []
        for _ in range(n):
            start = clock()
            fn()
            out.append(clock() - start)
        return out

    return block


def _measure(cases: dict[str, tuple[Block, Callable[[], object]]], rounds: int, calls: int) -> dict[str, Any]:
    samples: dict[str, list[int]] = {name: [] for name in cases}
    cpu_ns = dict.fromkeys(cases, 0)
    for block, flush in cases.values():  # warm up: workers, connections, caches
        block(WARM_UP_CALLS)
        flush()
    for _ in range(rounds):
        for name, (block, flush) in cases.items():
            cpu_start = time.process_time_ns()
            samples[name] += block(calls)
            flush()
            cpu_ns[name] += time.process_time_ns() - cpu_start
    return {
        name: {"median_us": statistics.median(samples[name]) / 1000, "cpu_us": cpu_ns[name] / rounds / calls / 1000}
        for name in cases
    }


def _child(peer: str, url: str, rounds: int, calls: int) -> None:
    """Measure one peer beside the references; print the figures as one JSON line."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    import flowledger

    class Discard(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    def span_case(exporter: SpanExporter) -> tuple[Block, Callable[[], object]]:
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(exporter))
        tracer = provider.get_tracer("bench")

        def call() -> None:
            with tracer.start_as_current_span("price") as span:
                span.set_attribute("input", json.dumps(ORDER))
                span.set_attribute("output", json.dumps(price(ORDER)))

        return _calls(call), provider.force_flush

    def flush_flowledger() -> None:
        flowledger.flush(timeout_s=30)

    def in_run(settings: dict[str, Any]) -> Block:
        """A node called inside a run started now (the run looks up the application's provider at its start)."""
        flowledger.configure(endpoint=url, **settings)
        node_price = flowledger.node(price)
        started = contextvars.copy_context()
        started.run(flowledger.run("bench").__enter__)  # the run stays open in that context for the whole process
        return _calls(lambda: started.run(node_price, ORDER))

    cases: dict[str, tuple[Block, Callable[[], object]]] = {
        "bare OTel span": span_case(Discard()),
        "bare OTel span, exported": span_case(OTLPSpanExporter(endpoint=f"{url}/v1/traces")),
        "flowledger node": (in_run({}), flush_flowledger),
    }
    if peer == "logfire":
        import logfire  # type: ignore[import-not-found]  # in the peers' venv only

        logfire.configure(
            token="bench-token",
            send_to_logfire=True,
            console=False,
            service_name="bench",
            advanced=logfire.AdvancedOptions(base_url=url),
        )
        instrumented = logfire.instrument("price")(price)
        cases["Logfire @logfire.instrument"] = (_calls(lambda: instrumented(ORDER)), logfire.force_flush)
        # the application installed Logfire's global TracerProvider: a run started now records through it
        both = _flush_all(logfire.force_flush, flush_flowledger)
        cases["flowledger node, Logfire's provider"] = (in_run({}), both)
        cases["... with otel_app_provider=False"] = (in_run({"otel_app_provider": False}), both)
    elif peer == "langfuse":
        from langfuse import Langfuse, observe  # type: ignore[import-not-found]

        client = Langfuse(public_key="pk-lf-bench", secret_key="sk-lf-bench", base_url=url)
        observed = observe(name="price")(price)
        cases["Langfuse @observe"] = (_calls(lambda: observed(ORDER)), client.flush)
    elif peer == "dbos":
        from dbos import DBOS  # type: ignore[import-not-found]

        directory = tempfile.mkdtemp(prefix="flowledger-peers-")
        DBOS(config={"name": "bench", "system_database_url": f"sqlite:///{directory}/dbos.sqlite"})
        step = DBOS.step()(price)

        @DBOS.workflow()  # type: ignore[untyped-decorator]
        def block(n: int) -> list[int]:
            return _calls(lambda: step(ORDER))(n)

        DBOS.launch()
        cases["DBOS @DBOS.step (in a workflow, SQLite)"] = (block, lambda: None)
    print(json.dumps(_measure(cases, rounds, calls)), flush=True)
    os._exit(0)  # the peers' exit handlers are not measured


def _flush_all(*flushes: Callable[[], object]) -> Callable[[], None]:
    def flush() -> None:
        for one in flushes:
            one()

    return flush


# --- the parent -----------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=15, help="blocks per case in one run")
    parser.add_argument("--calls", type=int, default=200, help="calls per block")
    args = parser.parse_args()
    python = peers_python()
    if python is None:
        print("could not install the peers: no comparison (see pip's output above)")
        return
    results: dict[str, list[dict[str, Any]]] = {peer: [] for peer in PEERS}
    with local_sink() as url:
        for _ in range(args.runs):
            for peer in PEERS:
                out = subprocess.run(
                    [python, __file__, "--child", peer, url, str(args.rounds), str(args.calls)],
                    check=True,
                    capture_output=True,
                    text=True,
                    env={**os.environ, "LOGFIRE_IGNORE_NO_CONFIG": "1", "DBOS__CLOUD": "false"},
                )
                results[peer].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(
        f"{args.runs} runs, each peer in a fresh process; {args.rounds} blocks x {args.calls} calls per case"
        f" per run; ratios against the bare OTel span of the same process"
    )
    print(f"{'case':<42} {'median us/call':>15} {'ratio (range)':>20} {'CPU us/call':>12} {'ratio (range)':>20}")
    for peer in PEERS:
        print(f"-- {peer}'s process")
        runs = results[peer]
        for case in runs[0]:
            walls = [r[case]["median_us"] for r in runs]
            wall_ratios = [r[case]["median_us"] / r["bare OTel span"]["median_us"] for r in runs]
            cpus = [r[case]["cpu_us"] for r in runs]
            cpu_ratios = [r[case]["cpu_us"] / r["bare OTel span"]["cpu_us"] for r in runs]
            print(
                f"{case:<42} {statistics.median(walls):>15.2f} {_ratio(wall_ratios):>20}"
                f" {statistics.median(cpus):>12.2f} {_ratio(cpu_ratios):>20}"
            )
    print("CPU: the process's every thread over each block and the flush that ends it, per call", flush=True)


def _ratio(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}x ({min(values):.2f}-{max(values):.2f})"


if __name__ == "__main__":
    if sys.argv[1:] == ["--sink"]:
        _serve_sink()
    elif sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
