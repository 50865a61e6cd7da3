"""The receiver's ingest path in process: CPU and instructions per event, next to a baseline revision.

    python benchmarks/ingest_path.py [--runs 3000] [--baseline REV] [--callgrind] [--lifecycle] [--waits]
                                     [--engine sqlite|postgres] [--postgres-url URL]

Decodes, validates and appends batches of 1,000 events (the realistic runs
of ``benchmarks/ingest.py``) to a ``SqliteStore`` on a fresh file, as the
ingest route does, without HTTP and client processes, in a child process
per source tree (the serving process's garbage-collection and
thread-switching settings applied). It prints the CPU per event of the whole process (both threads)
and of the event-loop thread. With ``--callgrind`` (valgrind installed) it
also runs each tree under callgrind at two sizes and prints the difference
in instructions per event: a figure that does not move with the load other
work puts on the machine, unlike the CPU times. ``--baseline REV`` is a git
revision of this repository that writes ledger format 2 or later (repeatable).

``--lifecycle`` measures what the ledger lifecycle change (ledger format 2:
deleting and retaining history with the proof intact) costs by itself, apart
from everything else added to ingest since format 1: this tree is also run
with its lifecycle steps left out, each alone, the first two together and
all three together, in the same run (the CPU loop takes the last two
variants; with ``--callgrind`` every variant is counted):

* ``merkle``: the Merkle tree append (leaf and subtree hashes, the
  ``merkle_nodes`` rows);
* ``payload-split``: payloads stored apart, as format 1 did not: the entry's
  JSON (the chain hashes the event's body instead, as format 1 did), the
  payload's own SHA-256 and the ``payloads`` row (the body sits in the
  ledger row, as in format 1: in the ``payload_hash`` column, which then
  holds the body instead of its hash, so no row is built twice);
* ``purge-bookkeeping``: what purges need at ingest: the per-run ledger
  index ``ledger_by_run``, ``secure_delete`` on the writer and
  ``auto_vacuum = INCREMENTAL`` on the file.

The steps are left out by patching this tree's store in the child process
(nothing shipped changes); the difference between this tree and the variant
without all three is the lifecycle's cost per event, printed as a share of
this tree's, and the difference from the variant without the first two is
what the ledger format itself (the Merkle tree and the payload split) adds
to every append. SQLite only.

``--waits`` also times, on this tree, each statement the writer's thread
runs itself (its reads, ``BEGIN`` and ``COMMIT``), in wall time per event:
a read, and the commit, first waits for the statements queued on the
statement thread before it, so these are where the writer's Python stands
still while SQLite works (what a writer folding the next commit group
meanwhile would win). Statements handed to the statement thread are not in
it. SQLite only.

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
from statistics import median
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BATCH = 1000
SMALL_RUNS, LARGE_RUNS = 100, 600
"""The two sizes callgrind runs: their difference leaves out start-up and imports."""


LIFECYCLE_STEPS = ("merkle", "payload-split", "purge-bookkeeping")
"""What ``--lifecycle`` leaves out of this tree, one at a time and all together (see the module's docstring)."""
FORMAT_STEPS = ("merkle", "payload-split")
"""What the ledger format (2 and since) itself adds to every append (the purge bookkeeping is what purges need of
the file)."""


def _leave_out(steps: frozenset[str], path: Path) -> None:
    """Patch this tree's SQLite store so that appends skip the lifecycle ``steps`` (before the store is opened)."""
    import sqlite3

    from flowledger.receiver.store import _sqlite
    from flowledger.receiver.store._migrations import migrate

    patched = ("insert_rows", "payload_hashes", "entry_bytes", "_INSERT_PAYLOADS", "_AUTO_VACUUM_INCREMENTAL")
    missing = [name for name in patched if name not in vars(_sqlite)]
    missing += [name for name in ("_tree_at", "_connect") if name not in vars(_sqlite.SqliteStore)]
    if missing:  # a renamed name would be patched in vain, and the step measured as free
        sys.exit(f"--lifecycle: the store no longer has {', '.join(missing)}; update benchmarks/ingest_path.py")
    if "merkle" in steps:

        class NoTree:
            def extend(self, entries: list[bytes], *, keep_from_level: int) -> list[tuple[int, int, bytes]]:
                return []

        async def no_tree(self: Any, conn: Any, size: int) -> NoTree:
            return NoTree()

        _sqlite.SqliteStore._tree_at = no_tree  # type: ignore[assignment,method-assign]
    if "payload-split" in steps:
        insert_rows = vars(_sqlite)["insert_rows"]

        async def rows_but_payloads(conn: Any, head: str, rows: Any, *, width: int, tail: str = "") -> None:
            if head != _sqlite._INSERT_PAYLOADS:
                await insert_rows(conn, head, rows, width=width, tail=tail)

        vars(_sqlite).update(
            insert_rows=rows_but_payloads,
            payload_hashes=list,  # the ledger row holds the body, as in format 1
            entry_bytes=lambda **fields: fields["payload_sha256"],  # the body (hashes left out): the chain hashes it
        )
    if "purge-bookkeeping" in steps:
        conn = sqlite3.connect(path, isolation_level=None)  # made here: auto_vacuum stays NONE
        migrate(conn)
        conn.execute("DROP INDEX ledger_by_run")
        conn.close()
        _sqlite._AUTO_VACUUM_INCREMENTAL = 0  # type: ignore[misc]  # so that opening does not switch the file
        connect = _sqlite.SqliteStore._connect

        async def without_secure_delete(self: Any, *, readonly: bool) -> Any:
            conn = await connect(self, readonly=readonly)
            await conn.execute("PRAGMA secure_delete = OFF")
            return conn

        _sqlite.SqliteStore._connect = without_secure_delete  # type: ignore[method-assign]


def _time_waits() -> dict[str, float]:
    """Time each statement the writer runs itself (not those it queues: :func:`_queued` is the store's own
    test), in seconds by its first words; patches this tree's ``ThreadConnection`` in this process."""
    from flowledger.receiver.store import _on_thread

    waits: dict[str, float] = {}
    connection = _on_thread.ThreadConnection
    for name in ("execute", "executemany", "execute_fetchall"):
        method = getattr(connection, name)

        def timed(self: Any, sql: str, parameters: Any = None, /, *, _method: Any = method) -> Any:
            async def run() -> Any:
                if self._statements is not None and _on_thread._queued(sql):
                    return await _method(self, sql, parameters)
                started = time.perf_counter()
                try:
                    return await _method(self, sql, parameters)
                finally:
                    key = " ".join(sql.split()[:4])
                    waits[key] = waits.get(key, 0.0) + time.perf_counter() - started

            return run()

        setattr(connection, name, timed)
    return waits


def child(
    runs: int,
    build_only: bool,
    projects: int,
    db: str | None = None,
    without: frozenset[str] = frozenset(),
    waits: bool = False,
) -> None:
    """Ingest ``runs`` runs in this process and print the figures as JSON (run with the tree on PYTHONPATH)."""
    import flowledger  # the tree under test, before benchmarks/ingest.py puts this one first on sys.path

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from ingest import build_runs

    from flowledger.receiver import _server
    from flowledger.receiver._config import IngestLimits
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
    _server._tune_gc()
    getattr(_server, "_tune_switching", lambda: None)()  # the serving process's settings (older trees: none)
    if build_only:
        print(json.dumps({"events": count}))
        return

    timed = _time_waits() if waits else None

    async def ingest(path: Path) -> tuple[float, float]:
        store: Store
        if db is None:
            if without:
                _leave_out(without, path)
            store = SqliteStore(path)
        else:
            from flowledger.receiver.store.postgres import PostgresStore

            store = PostgresStore(db)
        await store.open()
        try:
            cpu, loop, wall = time.process_time(), time.thread_time(), time.perf_counter()
            for body in bodies:
                batch = decode_batch(body, limits)
                valid = []
                for index, raw in enumerate(batch.events):
                    event = prepare_event(raw, index, limits, None, plain_floats=batch.plain_floats)
                    assert isinstance(event, PreparedEvent)
                    valid.append(event)
                await store.append(valid)
            walls.append(time.perf_counter() - wall)
            return time.process_time() - cpu, time.thread_time() - loop
        finally:
            await store.close()

    walls: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        cpu, loop = asyncio.run(ingest(Path(tmp) / "path.db"))
    figures: dict[str, Any] = {"events": count, "cpu_us": cpu / count * 1e6, "loop_us": loop / count * 1e6}
    figures.update(wall_us=walls[0] / count * 1e6, tree=flowledger.__file__)
    if timed is not None:
        figures["waits_us"] = {key: seconds / count * 1e6 for key, seconds in timed.items()}
    print(json.dumps(figures))


def serve_without(steps: frozenset[str], argv: list[str], db: str) -> None:
    """Run ``flowledger`` with ``argv`` (``serve ...``) and ``--db db`` in this process, the lifecycle ``steps``
    left out of its SQLite store as :func:`_leave_out` does (``benchmarks/ingest.py --lifecycle``)."""
    from flowledger.cli import main as flowledger_main

    _leave_out(steps, Path(db))
    sys.argv = ["flowledger", *argv, "--db", db]
    flowledger_main()


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
    without: frozenset[str] = frozenset(),
    waits: bool = False,
) -> dict[str, Any]:
    """One child's figures; with ``server`` (a PostgreSQL URL) on a new database there, with the server's CPU;
    ``without`` names lifecycle steps left out (:data:`LIFECYCLE_STEPS`); ``waits``: the writer's own
    statements timed too (:func:`_time_waits`)."""
    from ingest import fresh_postgres_database

    env = dict(os.environ, PYTHONPATH=str(src))
    command = [sys.executable, __file__, "--child", str(runs), "--projects", str(projects)]
    command += ["--build-only"] if build_only else []
    command += ["--without", ",".join(sorted(without))] if without and not build_only else []
    command += ["--waits"] if waits and not build_only else []
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


def _print_waits(runs: list[dict[str, Any]]) -> None:
    """The medians of ``--waits``: what the writer's thread waited on, per event, beside the wall time per event."""
    keys = sorted({key for run in runs for key in run["waits_us"]}, key=lambda k: -runs[0]["waits_us"].get(k, 0.0))
    walls = sorted(run["wall_us"] for run in runs)
    totals = sorted(sum(run["waits_us"].values()) for run in runs)
    middle = len(runs) // 2
    print(
        f"[{THIS}, timed] wall {walls[middle]:.1f} us/event, of it the writer's own statements "
        f"{totals[middle]:.1f} us/event (its reads, BEGIN and COMMIT, each after the statements queued before it):"
    )
    for key in keys:
        values = sorted(run["waits_us"].get(key, 0.0) for run in runs)
        if values[middle] >= 0.05:
            print(f"    {values[middle]:5.1f} us/event  {key} ...")


THIS = "this tree"
WITHOUT_LIFECYCLE = f"{THIS} without the lifecycle steps"
WITHOUT_FORMAT = f"{THIS} without the Merkle tree and payload split"


def _sqlite_instructions(out: Path) -> int:
    """Instructions executed in SQLite's own code (libsqlite3, exclusive of the C library it calls) in a profile."""
    listing = subprocess.run(
        ["callgrind_annotate", "--threshold=100", str(out)], capture_output=True, text=True, check=True
    ).stdout
    return sum(
        int(line.split()[0].replace(",", ""))
        for line in listing.splitlines()
        if "libsqlite3" in line and line.strip()[:1].isdigit()
    )


def instructions_per_event(
    src: Path,
    tmp: Path,
    projects: int,
    server: str | None = None,
    without: frozenset[str] = frozenset(),
    builds: dict[tuple[Path, int], tuple[int, int, int]] | None = None,
) -> tuple[float, float]:
    """Instructions of the ingest path per event, all and SQLite's own: (large - its build) - (small - its build),
    per event.

    ``builds`` keeps the build-only counts of each tree and size, the same whatever is left out.
    """
    counts: dict[tuple[int, bool], tuple[int, int, int]] = {}
    builds = {} if builds is None else builds
    for runs in (SMALL_RUNS, LARGE_RUNS):
        for build_only in (False, True):
            if build_only and (src, runs) in builds:
                counts[runs, True] = builds[src, runs]
                continue
            out = tmp / f"callgrind-{runs}-{build_only}.out"
            figures = _run(src, runs, projects, build_only=build_only, callgrind=out, server=server, without=without)
            counts[runs, build_only] = figures["instructions"], figures["events"], _sqlite_instructions(out)
            if build_only:
                builds[src, runs] = counts[runs, True]
    events = counts[LARGE_RUNS, False][1] - counts[SMALL_RUNS, False][1]
    per_event = []
    for part in (0, 2):
        large = counts[LARGE_RUNS, False][part] - counts[LARGE_RUNS, True][part]
        small = counts[SMALL_RUNS, False][part] - counts[SMALL_RUNS, True][part]
        per_event.append((large - small) / events)
    return per_event[0], per_event[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3000, help="runs of 9 events each for the CPU figures")
    parser.add_argument("--repeat", type=int, default=3, help="CPU measurements per tree (the median is printed)")
    parser.add_argument(
        "--baseline",
        action="append",
        default=[],
        help="also measure this git revision (ledger format 2 or later; repeatable)",
    )
    parser.add_argument("--callgrind", action="store_true", help="also count instructions per event (valgrind)")
    parser.add_argument("--projects", type=int, default=0, help="runs go to this many projects in turn (0: none)")
    parser.add_argument("--engine", choices=("sqlite", "postgres"), default="sqlite", help="the store appended to")
    parser.add_argument("--postgres-url", default=None, help="a PostgreSQL server to create databases on")
    parser.add_argument(
        "--lifecycle", action="store_true", help="also measure this tree with the ledger lifecycle's steps left out"
    )
    parser.add_argument(
        "--waits", action="store_true", help="also time the statements the writer's thread waits on (this tree)"
    )
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--db", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--without", default="", help=argparse.SUPPRESS)
    parser.add_argument("--serve-without", default=None, help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.serve_without is not None:
        if args.db is None:
            parser.error("--serve-without needs --db")
        serve_without(frozenset(filter(None, args.serve_without.split(","))), rest, args.db)
        return
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.child is not None:
        without = frozenset(filter(None, args.without.split(",")))
        child(args.child, args.build_only, args.projects, args.db, without, args.waits)
        return
    if args.callgrind and shutil.which("valgrind") is None:
        sys.exit("--callgrind needs valgrind (Debian: apt-get install valgrind)")
    if (args.lifecycle or args.waits) and args.engine != "sqlite":
        sys.exit("--lifecycle and --waits measure the SQLite store only")
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
        none: frozenset[str] = frozenset()
        trees: dict[str, tuple[Path, frozenset[str]]] = {THIS: (ROOT / "src", none)}
        if args.baseline:
            from ingest import export_revision  # the same unpacking as benchmarks/ingest.py

            for revision in args.baseline:
                (tmp / revision).mkdir()
                trees = {f"baseline {revision}": (export_revision(revision, tmp / revision), none), **trees}
        if args.lifecycle:
            trees[WITHOUT_FORMAT] = (ROOT / "src", frozenset(FORMAT_STEPS))
            trees[WITHOUT_LIFECYCLE] = (ROOT / "src", frozenset(LIFECYCLE_STEPS))
        cpu: dict[str, list[tuple[float, float, float]]] = {label: [] for label in trees}
        waited: list[dict[str, Any]] = []
        for _ in range(args.repeat):
            for label, (src, without) in trees.items():
                figures = _run(src, args.runs, args.projects, server=server, without=without)
                cpu[label].append((figures["cpu_us"], figures["loop_us"], figures.get("server_us", 0.0)))
            if args.waits:
                waited.append(_run(ROOT / "src", args.runs, args.projects, waits=True))
        if args.lifecycle:
            trees.update({f"{THIS} without {step}": (ROOT / "src", frozenset({step})) for step in LIFECYCLE_STEPS})
        builds: dict[tuple[Path, int], tuple[int, int, int]] = {}
        counted = (
            {
                label: instructions_per_event(src, tmp, args.projects, server, without, builds)
                for label, (src, without) in trees.items()
            }
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
    if waited:
        _print_waits(waited)
    for label, (total, sqlite) in counted.items():
        print(f"[{label}] instructions: {total:,.0f} per event, {sqlite:,.0f} of them in SQLite (callgrind)")
    for revision in args.baseline if counted else ():
        (base, base_sqlite), (this, this_sqlite) = counted[f"baseline {revision}"], counted[THIS]
        print(
            f"this tree / baseline {revision}: {this / base:.3f} of its instructions per event, "
            f"{this_sqlite / base_sqlite:.3f} of its SQLite instructions"
        )
    if args.lifecycle and counted:
        this = counted[THIS][0]
        for step in LIFECYCLE_STEPS:
            cost = this - counted[f"{THIS} without {step}"][0]
            print(f"lifecycle step {step}: {cost:,.0f} instructions per event, {cost / this:.1%} of this tree's")
        for label, what in ((WITHOUT_FORMAT, "Merkle tree and payload split"), (WITHOUT_LIFECYCLE, "lifecycle steps")):
            cost = this - counted[label][0]
            print(f"{what} together: {cost:,.0f} instructions per event, {cost / this:.1%} of this tree's")
    if args.lifecycle:
        cpu_this = median(v[0] for v in cpu[THIS])
        for label, what in ((WITHOUT_FORMAT, "Merkle tree and payload split"), (WITHOUT_LIFECYCLE, "lifecycle steps")):
            ratio = cpu_this / median(v[0] for v in cpu[label])
            print(f"{what}, CPU medians: {ratio:.3f} of the time without them")


if __name__ == "__main__":
    main()
