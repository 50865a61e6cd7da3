"""Instructions per call of a flowledger node next to a bare OTel span, counted by callgrind.

Run: ``.venv/bin/python benchmarks/sdk_instructions.py [--calls 1000]`` (needs valgrind).

Wall and CPU times move with whatever else the machine does; instruction
counts do not. Each case of ``sdk_overhead.py`` runs in a child process
under ``valgrind --tool=callgrind``, twice: once making ``--calls`` calls
and once making twice as many, after the same warm-up. The difference of
the two totals, divided by ``--calls``, is what one call costs: the
interpreter's start-up, the imports, the warm-up and the exit are the same
in both and cancel out. The calls end with a flush of what they handed to a
background thread (callgrind counts every thread), so the figure includes
delivery: encoding, gzip and the HTTP posts to the same stand-in receiver
``sdk_overhead.py`` uses, which runs outside valgrind.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from sdk_overhead import ORDER, _Discard, local_sink, price

import flowledger

VALGRIND = shutil.which("valgrind") or "/usr/bin/valgrind"
WARM_UP_CALLS = 300
CASES = (
    "bare call",
    "bare OTel span",
    "bare OTel span, exported",
    "flowledger node, span export off",
    "flowledger node, span export on",
)
_TOTALS = re.compile(r"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


def _child(case: str, calls: int, url: str) -> None:
    """Set up one case, warm it up, make ``calls`` calls and flush what they handed over."""
    provider = TracerProvider()
    exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces") if case == "bare OTel span, exported" else _Discard()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("bench")
    node_price = flowledger.node(price)
    flowledger.configure(endpoint=url, export_spans=case.endswith("span export on"))

    def bare_call() -> None:
        price(ORDER)

    def otel_span() -> None:
        with tracer.start_as_current_span("price") as span:
            span.set_attribute("input", json.dumps(ORDER))
            span.set_attribute("output", json.dumps(price(ORDER)))

    def node_call() -> None:
        node_price(ORDER)

    call = node_call if case.startswith("flowledger") else otel_span if case.startswith("bare OTel") else bare_call
    with flowledger.run("bench"):
        for _ in range(WARM_UP_CALLS):
            call()
        provider.force_flush()
        flowledger.flush(timeout_s=30)
        for _ in range(calls):
            call()
        provider.force_flush()
        flowledger.flush(timeout_s=30)
    provider.shutdown()


def count(case: str, calls: int, url: str) -> int:
    """Instructions of a whole child process making ``calls`` calls of ``case``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run(
            [
                VALGRIND,
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                __file__,
                "--child",
                case,
                str(calls),
                url,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        found = _TOTALS.search(out.read_text())
        if found is None:
            raise RuntimeError(f"callgrind wrote no total to {out}")
        return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="calls of the shorter run (the longer makes twice)")
    args = parser.parse_args()
    if not Path(VALGRIND).exists():
        print("valgrind is not installed: no instruction counts (apt-get install valgrind)")
        return
    per_call: dict[str, float] = {}
    with local_sink() as url:
        for case in CASES:
            once, twice = count(case, args.calls, url), count(case, 2 * args.calls, url)
            per_call[case] = (twice - once) / args.calls
    ref = per_call["bare OTel span"]
    print(f"instructions per call (callgrind): ({args.calls * 2} calls - {args.calls} calls) / {args.calls}")
    print("delivery included: each run ends by flushing what its calls handed to a background thread")
    print(f"{'case':<40} {'instructions':>13} {'ratio':>7}")
    for case, instructions in per_call.items():
        print(f"{case:<40} {instructions:>13,.0f} {instructions / ref:>6.2f}x")
    print("ratio: against the bare OTel span (BatchSpanProcessor, exporter that discards)", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        main()
