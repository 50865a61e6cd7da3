"""The receiver's ingest path in process: CPU and instructions per event, next to a baseline revision.

    python benchmarks/ingest_path.py [--runs 3000] [--baseline REV] [--callgrind]
                                     [--engine sqlite|postgres] [--postgres-url URL]

Decodes, validates and appends batches of 1,000 events (the realistic runs
of ``benchmarks/ingest.py``) to a ``SqliteStore`` on a fresh file, as the
ingest route does, without HTTP and client processes, in a child process
per source tree (the serving process's garbage-collection settings
applied). It prints the CPU per event of the whole process (both threads)
and of the event-loop thread. With ``--callgrind`` (valgrind installed) it
also runs each tree under callgrind at two sizes and prints the difference
in instructions per event: a figure that does not move with the load other
work puts on the machine, unlike the CPU times. ``--baseline REV`` is a git
revision of this repository that writes ledger format 2.

With ``--engine postgres`` each child appends to a ``PostgresStore`` on a
new database instead (a throwaway cluster of the machine's binaries without
``--postgres-url``), and the PostgreSQL server's CPU per event (every
``postgres`` process, read by the parent around each child) is printed
beside the receiver's: the database's share of the work is not in the
child's figures, nor in its instruction counts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BATCH = 1000
SMALL_RUNS, LARGE_RUNS = 100, 600
"""The two sizes callgrind runs: their difference leaves out start-up and imports."""


def child(runs: int, build_only: bool, projects: int, db: str | None = None) -> None:
    """Ingest ``runs`` runs in this process and print the figures as JSON (run with the tree on PYTHONPATH)."""
    import flowledger  # the tree under test, before benchmarks/ingest.py puts this one first on sys.path

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from ingest import build_runs

    from flowledger.receiver._config import IngestLimits
    from flowledger.receiver._server import _tune_gc
    from flowledger.receiver._validate import prepare_event
    from flowledger.receiver.ingest._batch import decode_batch
    from flowledger.receiver.store._event import PreparedEvent
    from flowledger.receiver.store._protocol import Store
    from flowledger.receiver.store._sqlite import SqliteStore

    events = build_runs(runs, projects)
    count = len(events)
    bodies = [json.dumps({"events": events[i : i + BATCH]}).encode() for i in range(0, count, BATCH)]
    del events
    limits = IngestLimits()
    _tune_gc()
    if build_only:
        print(json.dumps({"events": count}))
        return

    async def ingest(path: Path) -> tuple[float, float]:
        store: Store
        if db is None:
            store = SqliteStore(path)
        else:
            from flowledger.receiver.store.postgres import PostgresStore

            store = PostgresStore(db)
        await store.open()
        try:
            cpu, loop = time.process_time(), time.thread_time()
            for body in bodies:
                batch = decode_batch(body, limits)
                valid = []
                for index, raw in enumerate(batch.events):
                    event = prepare_event(raw, index, limits, None, plain_floats=batch.plain_floats)
                    assert isinstance(event, PreparedEvent)
                    valid.append(event)
                await store.append(valid)
            return time.process_time() - cpu, time.thread_time() - loop
        finally:
            await store.close()

    with tempfile.TemporaryDirectory() as tmp:
        cpu, loop = asyncio.run(ingest(Path(tmp) / "path.db"))
    print(
        json.dumps(
            {"events": count, "cpu_us": cpu / count * 1e6, "loop_us": loop / count * 1e6, "tree": flowledger.__file__}
        )
    )


def _server_cpu_seconds() -> float:
    """CPU time so far of the PostgreSQL server's processes, those that ended included: a child's backend exits
    with it, and its time moves to the postmaster's reaped children's (fields 14 and 15 of /proc/PID/stat)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return total


def _run(
    src: Path,
    runs: int,
    projects: int,
    *,
    build_only: bool = False,
    callgrind: Path | None = None,
    server: str | None = None,
) -> dict[str, Any]:
    """One child's figures; with ``server`` (a PostgreSQL URL) on a new database there, with the server's CPU."""
    from ingest import fresh_postgres_database

    env = dict(os.environ, PYTHONPATH=str(src))
    command = [sys.executable, __file__, "--child", str(runs), "--projects", str(projects)]
    command += ["--build-only"] if build_only else []
    if server is not None and not build_only:
        command += ["--db", fresh_postgres_database(server)]
    server_before = _server_cpu_seconds() if server is not None else 0.0
    if callgrind is not None:
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={callgrind}", *command]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if server is not None and "cpu_us" in figures:
        figures["server_us"] = (_server_cpu_seconds() - server_before) / figures["events"] * 1e6
    if "tree" in figures and not figures["tree"].startswith(str(src)):
        sys.exit(f"the child measured {figures['tree']}, not the tree {src}")
    if callgrind is not None:
        collected = re.search(r"Collected : (\d+)", done.stderr)
        if collected is None:
            sys.exit(f"callgrind printed no count: {done.stderr[-500:]}")
        figures["instructions"] = int(collected.group(1))
    return figures


def instructions_per_event(src: Path, tmp: Path, projects: int, server: str | None = None) -> float:
    """Instructions of the ingest path per event: (large - its build) - (small - its build), per event."""
    counts: dict[tuple[int, bool], tuple[int, int]] = {}
    for runs in (SMALL_RUNS, LARGE_RUNS):
        for build_only in (False, True):
            out = tmp / f"callgrind-{runs}-{build_only}.out"
            figures = _run(src, runs, projects, build_only=build_only, callgrind=out, server=server)
            counts[runs, build_only] = figures["instructions"], figures["events"]
    large = counts[LARGE_RUNS, False][0] - counts[LARGE_RUNS, True][0]
    small = counts[SMALL_RUNS, False][0] - counts[SMALL_RUNS, True][0]
    return (large - small) / (counts[LARGE_RUNS, False][1] - counts[SMALL_RUNS, False][1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3000, help="runs of 9 events each for the CPU figures")
    parser.add_argument("--repeat", type=int, default=3, help="CPU measurements per tree (the median is printed)")
    parser.add_argument("--baseline", default=None, help="also measure this git revision (ledger format 2)")
    parser.add_argument("--callgrind", action="store_true", help="also count instructions per event (valgrind)")
    parser.add_argument("--projects", type=int, default=0, help="runs go to this many projects in turn (0: none)")
    parser.add_argument("--engine", choices=("sqlite", "postgres"), default="sqlite", help="the store appended to")
    parser.add_argument("--postgres-url", default=None, help="a PostgreSQL server to create databases on")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--db", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.build_only, args.projects, args.db)
        return
    if args.callgrind and shutil.which("valgrind") is None:
        sys.exit("--callgrind needs valgrind (Debian: apt-get install valgrind)")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    with tempfile.TemporaryDirectory() as tmp_name, contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        server: str | None = None
        if args.engine == "postgres":
            server = args.postgres_url
            if server is None:
                sys.path.insert(0, str(ROOT))
                from tests._postgres import postgres_cluster

                server = stack.enter_context(postgres_cluster())
        trees = {"this tree": ROOT / "src"}
        if args.baseline is not None:
            from ingest import export_revision  # the same unpacking as benchmarks/ingest.py

            (tmp / "baseline").mkdir()
            trees = {f"baseline {args.baseline}": export_revision(args.baseline, tmp / "baseline"), **trees}
        cpu: dict[str, list[tuple[float, float, float]]] = {label: [] for label in trees}
        for _ in range(args.repeat):
            for label, src in trees.items():
                figures = _run(src, args.runs, args.projects, server=server)
                cpu[label].append((figures["cpu_us"], figures["loop_us"], figures.get("server_us", 0.0)))
        counted = (
            {label: instructions_per_event(src, tmp, args.projects, server) for label, src in trees.items()}
            if args.callgrind
            else {}
        )
    print(
        f"ingest path in process on {args.engine}, {args.runs * 9:,} events in batches of {BATCH}, "
        f"runs in {args.projects} projects; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    for label, values in cpu.items():
        totals, loops = sorted(v[0] for v in values), sorted(v[1] for v in values)
        servers = sorted(v[2] for v in values)
        middle = len(values) // 2
        print(
            f"[{label}] CPU {totals[middle]:6.1f} us/event [{totals[0]:.1f} to {totals[-1]:.1f}], "
            f"event-loop thread {loops[middle]:.1f} us/event"
            + (f", PostgreSQL server {servers[middle]:.1f} us/event" if server is not None else "")
        )
        if label in counted:
            print(f"[{label}] instructions: {counted[label]:,.0f} per event (callgrind)")
    if len(counted) == 2:
        (_, base), (_, this) = counted.items()
        print(f"this tree / baseline: {this / base:.3f} of the baseline's instructions per event")


if __name__ == "__main__":
    main()
