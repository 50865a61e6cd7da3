"""How long a process's exit is held when the receiver is down: flowledger next to the OTel SDK.

Run: ``python benchmarks/exit_hold.py [--runs 3] [--events 1000] [--heavy-events 10000] [--spool-files 5000]``

Each measurement is a fresh child process that submits the events (for
flowledger: 1,000 events to the background sender with default settings;
for the stock OpenTelemetry SDK: 1,000 spans through TracerProvider +
BatchSpanProcessor + OTLPSpanExporter over HTTP to the same endpoint),
prints the wall-clock time at which it is done, and returns, leaving each
SDK's own exit handling to run. The exit hold is the time from that point
until the process is gone. Two receivers are down in two ways: a closed
port (connections refused) and a socket that accepts connections but
never answers. The medians of ``--runs`` runs are printed, plus how many
events flowledger kept in its spool for the next process.

flowledger's sender is measured twice per receiver: with ``--events``
events and an empty spool, and in a heavy case, ``--heavy-events`` events
(most of them still queued at exit) into a spool that already holds
``--spool-files`` files left by earlier processes. Then the two ways users
run workflows, each configured only by ``FLOWLEDGER_*`` variables with
default settings (spans exported too): a hand-instrumented script (one
``flowledger.run`` calling a ``@flowledger.node`` function ``--events``
times) and a generated workflow run as ``python OUT.py --input ...`` (a
node mapped over ``--events`` items, then one that returns the time its
work ended, printed as the workflow's output).
"""

from __future__ import annotations

import argparse
import atexit
import gzip
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parents[1]
TARGET_S: Final = 0.5
CHILD_TIMEOUT_S: Final = 120.0


# --- the child processes ---------------------------------------------------


def child_flowledger(url: str, spool_dir: str, count: int) -> None:
    from flowledger._wire import format_ts, new_event_id
    from flowledger.instrument._config import Settings
    from flowledger.instrument.delivery._sender import Sender

    settings = Settings(endpoint=url, spool_dir=Path(spool_dir))
    sender = Sender(settings)
    atexit.register(sender.shutdown, settings.exit_flush_s)  # what flowledger's pipeline registers
    run_id, producer_id = new_event_id(), new_event_id()
    for seq in range(count):
        event = {
            "v": 1,
            "event_id": new_event_id(),
            "kind": "heartbeat",
            "run_id": run_id,
            "seq": seq,
            "ts": format_ts(time.time_ns()),
            "producer_id": producer_id,
            "producer_seq": seq,
            "data": {"cost": {"tokens": seq}},
        }
        sender.submit(event, 300)
    print(f"done {time.time():.6f}", flush=True)


def child_script(count: int) -> None:
    """A hand-instrumented script: one run, ``count`` node calls, settings from the environment."""
    import flowledger

    @flowledger.node
    def touch(item: int) -> int:
        return item + 1

    with flowledger.run("exit-hold", trigger="manual"):
        for item in range(count):
            touch(item)
    print(f"done {time.time():.6f}", flush=True)


# The generated workflow's nodes (its definition calls ``exit_hold:items`` and so on).


def items(count: int) -> list[int]:
    return list(range(count))


def touch(item: int) -> int:
    return item + 1


def stamp(_results: Any) -> str:
    """The generated workflow's output: the time its work ended."""
    return f"done {time.time():.6f}"


GENERATED_DEFINITION: Final = """\
flowledger: 1
workflow: {id: exit-hold}
nodes:
  - {id: items, call: "exit_hold:items"}
  - {id: each, call: "exit_hold:touch", needs: [items], map: {max_concurrency: 8}}
  - {id: stamp, call: "exit_hold:stamp", needs: [each]}
"""


def _generate(folder: Path) -> Path:
    from flowledger.codegen import generate

    definition = folder / "exit-hold.yaml"
    definition.write_text(GENERATED_DEFINITION, encoding="utf-8")
    module = folder / "exit_hold_workflow.py"
    module.write_text(generate(definition, display_name=definition.name), encoding="utf-8")
    return module


def child_bare() -> None:
    """The same interpreter with the same modules imported, and no work: Python's own exit cost."""
    import opentelemetry.exporter.otlp.proto.http.trace_exporter
    import opentelemetry.sdk.trace  # noqa: F401

    import flowledger.instrument.delivery._sender  # noqa: F401

    print(f"done {time.time():.6f}", flush=True)


def child_otel(url: str, count: int) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "exit-hold"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url + "/v1/traces")))
    tracer = provider.get_tracer("exit-hold")
    for seq in range(count):
        with tracer.start_as_current_span("node") as span:
            span.set_attribute("seq", seq)
    print(f"done {time.time():.6f}", flush=True)


# --- the parent ------------------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    paths = (str(ROOT / "src"), str(Path(__file__).resolve().parent), env.get("PYTHONPATH", ""))
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    for name in [n for n in env if n.startswith(("OTEL_", "FLOWLEDGER_"))]:
        del env[name]
    env.update(extra)
    return env


def _measure(args: list[str], *, command: list[str] | None = None, env: dict[str, str] | None = None) -> float:
    """Seconds from the child's ``done`` mark to its end; the child is this script unless ``command`` says."""
    done = subprocess.run(
        command or [sys.executable, __file__, "--child", *args],
        capture_output=True,
        text=True,
        env=env or _env(),
        timeout=CHILD_TIMEOUT_S,
    )
    end = time.time()
    marks = [line.strip('"') for line in done.stdout.splitlines() if line.strip('"').startswith("done ")]
    if done.returncode != 0 or not marks:
        raise SystemExit(f"child {args[0]} failed (exit {done.returncode}):\n{done.stderr}")
    return end - float(marks[-1].split()[1])


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


PREFILL_MARK: Final = "prefilled"


def _prefill(spool_dir: Path, files: int) -> None:
    """Spool files as earlier processes leave them (one event each), oldest first by name."""
    spool_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    event = {"v": 1, "kind": "heartbeat", "run_id": str(uuid.uuid4()), "seq": 0, "data": {PREFILL_MARK: True}}
    for n in range(files):
        event["event_id"] = f"00000000-0000-7000-8000-{n:012d}"
        body = gzip.compress(json.dumps({"events": [event]}).encode(), compresslevel=1)
        (spool_dir / f"{event['event_id']}.json.gz").write_bytes(body)


def _spooled(spool_dir: Path) -> int:
    """Events of the measured process in the spool (ready or claimed files), not counting prefilled ones."""
    total = 0
    for path in spool_dir.glob("*.json.gz*"):
        events = json.loads(gzip.decompress(path.read_bytes()))["events"]
        total += sum(1 for e in events if not e.get("data", {}).get(PREFILL_MARK))
    return total


@dataclass(frozen=True)
class Row:
    """The medians measured with one kind of dead receiver and one load."""

    receiver: str
    load: str
    flowledger_s: float
    spooled: int
    """Fewest events flowledger kept in its spool in any run (all of them: nothing lost)."""
    otel_s: float | None


def measure_exit_hold(
    *,
    runs: int = 3,
    events: int = 1000,
    heavy_events: int = 10_000,
    spool_files: int = 5000,
    include_otel: bool = True,
    include_workflows: bool = True,
) -> tuple[float, list[Row]]:
    """Python's own exit time, and rows per dead receiver and load (medians of ``runs`` child processes)."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1024)  # accepts connections into the backlog, never answers
    receivers = {
        "connection refused": _closed_port_url(),
        "accepts, never answers": f"http://127.0.0.1:{silent.getsockname()[1]}",
    }
    bare = statistics.median(_measure(["bare", "-", "-", "0"]) for _ in range(runs))
    rows: list[Row] = []
    try:
        loads = [(f"{events:,} events", events, 0, include_otel)]
        if heavy_events:
            loads.append((f"{heavy_events:,} ev, spool of {spool_files:,}", heavy_events, spool_files, False))
        for label, url in receivers.items():
            for load, count, files, with_otel in loads:
                flow: list[float] = []
                kept: list[int] = []
                for _ in range(runs):
                    with tempfile.TemporaryDirectory() as tmp:
                        _prefill(Path(tmp), files)
                        flow.append(_measure(["flowledger", url, tmp, str(count)]))
                        kept.append(_spooled(Path(tmp)))
                otel = [_measure(["otel", url, "-", str(count)]) for _ in range(runs if with_otel else 0)]
                median_otel = statistics.median(otel) if otel else None
                rows.append(Row(label, load, statistics.median(flow), min(kept), median_otel))
            if include_workflows:
                rows.extend(_measure_workflows(label, url, events, runs))
    finally:
        silent.close()
    return bare, rows


def _measure_workflows(receiver: str, url: str, events: int, runs: int) -> list[Row]:
    """A hand-instrumented script and a generated workflow's command line, settings from the environment."""
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as folder:
        module = _generate(Path(folder))
        cases = {
            f"script, {events:,} nodes": [sys.executable, __file__, "--child", "script", url, "-", str(events)],
            f"generated, {events:,} map items": [sys.executable, str(module), "--input", str(events)],
        }
        for load, command in cases.items():
            held: list[float] = []
            kept: list[int] = []
            for _ in range(runs):
                with tempfile.TemporaryDirectory() as tmp:
                    env = _env(FLOWLEDGER_ENDPOINT=url, FLOWLEDGER_SPOOL_DIR=tmp)
                    held.append(_measure([load], command=command, env=env))
                    kept.append(_spooled(Path(tmp)))
            rows.append(Row(receiver, load, statistics.median(held), min(kept), None))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement (median reported)")
    parser.add_argument("--events", type=int, default=1000, help="events or spans per run")
    parser.add_argument("--heavy-events", type=int, default=10_000, help="events of the heavy case (0: skip it)")
    parser.add_argument("--spool-files", type=int, default=5000, help="files already in the spool in the heavy case")
    parser.add_argument(
        "--skip-otel", action="store_true", help="measure flowledger only (the OTel SDK takes ~15 s a run)"
    )
    parser.add_argument(
        "--skip-workflows", action="store_true", help="skip the hand-instrumented script and the generated workflow"
    )
    opts = parser.parse_args()
    print(f"exit hold with the receiver down: {opts.events} events/spans, then exit; median of {opts.runs} runs")
    bare, rows = measure_exit_hold(
        runs=opts.runs,
        events=opts.events,
        heavy_events=opts.heavy_events,
        spool_files=opts.spool_files,
        include_otel=not opts.skip_otel,
        include_workflows=not opts.skip_workflows,
    )
    print(f"(python alone, same imports, no work: {bare:.3f} s)")
    print(f"{'receiver':<26}{'load':<34}{'flowledger':>12}{'spooled':>10}{'OpenTelemetry SDK':>20}")
    for row in rows:
        otel_text = f"{row.otel_s:>18.3f} s" if row.otel_s is not None else f"{'-':>20}"
        print(f"{row.receiver:<26}{row.load:<34}{row.flowledger_s:>10.3f} s{row.spooled:>10}{otel_text}")
    worst = max(row.flowledger_s for row in rows)
    verdict = "meets" if worst <= TARGET_S else "MISSES"
    print(f"flowledger {verdict} the target of <= {TARGET_S} s (worst median {worst:.3f} s)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, url, spool, count = sys.argv[2:6]
        if kind == "flowledger":
            child_flowledger(url, spool, int(count))
        elif kind == "script":
            child_script(int(count))
        elif kind == "bare":
            child_bare()
        else:
            child_otel(url, int(count))
    else:
        main()
