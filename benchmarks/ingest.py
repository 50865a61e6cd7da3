"""Ingest throughput: events/s over HTTP into a real receiver, next to raw sqlite3.

    python benchmarks/ingest.py [--events 100000] [--clients 4] [--batch 1000] [--baseline REV] [--repeat N]
                                [--lifecycle] [--engine sqlite|postgres] [--postgres-url URL]
                                [--python INTERPRETER ...]

Starts ``flowledger serve`` on a fresh database (a real uvicorn process on
127.0.0.1), has CLIENTS processes build realistic runs (run_started, node
attempts with input and output, a heartbeat, run_finished), encode them into
batches *before* the clock starts, then post them concurrently. It prints
events/s end to end (validation, hash chain, projections, commit) and, for
the same rows, the speed of a bare ``sqlite3`` ``executemany`` into the
ledger table in one transaction, measured in the same run.

Two lines say what SQLite alone allows for the whole ingest. "all rows"
(the first release's line) writes the ledger, payloads, tree nodes, runs,
node attempts and producer counts, folded and hashed beforehand.
"statements" is exact: every write statement this tree's store runs on its
writer for the same events, noted with its parameters while the store
ingests them in process (not timed), then run again by bare ``sqlite3`` on
a fresh file, the rows of every table checked equal to the store's: the
statistics rollups, search text, error groups and anything a later change
adds are in it by construction.

With ``--baseline REV`` (a git revision of this repository, e.g. ``main``,
or the last revision that wrote ledger format 1) the receiver of that
revision is measured in the same run, alternating with this tree's
``--repeat`` times, on the same machine and client load, with the SQLite
references measured between them each round; every figure is the median of
the runs, with their range. Each round starts with the next setup in turn,
and every measurement first waits until the disk holds what the one before
wrote (its files removed, then ``sync``): the receiver that always ran
right after the references used to run while the kernel wrote them back.

With ``--lifecycle`` this tree's receiver is also run with the ledger
lifecycle's steps left out, patched out of its store in the serving process
as ``benchmarks/ingest_path.py --lifecycle`` does: once without the Merkle
tree and the payload split (what the ledger format itself adds to every
append), once without those and the purge bookkeeping as well, alternating
with this tree's in the same rounds. The ratio of this tree's events/s (and
CPU per event) to each is what those steps cost ingest end to end.

With ``--python INTERPRETER`` (repeatable) this tree's receiver is also
served by that Python interpreter, in the same rounds: another version, or
a free-threaded build, whose threads run Python at once. The interpreter
needs the receiver's dependencies installed; the ledger it writes is
verified by this one. Every receiver's report gives how busy its event-loop
thread and its busiest other thread were, as shares of the wall time: a
thread near 100% is the stage that bounds the rate; with none near it, the
hand-offs between them (or the interpreter lock) do.

With ``--engine postgres`` the same client load is posted, in the same run,
to a receiver on SQLite, to one receiver on PostgreSQL and to two receivers
sharing one PostgreSQL database (the clients split between them), each on a
fresh database; the PostgreSQL server's own CPU is measured beside the
receivers'. Without ``--postgres-url`` a throwaway cluster of the machine's
PostgreSQL binaries is started for the run (as the tests do).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import secrets
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from operator import attrgetter
from pathlib import Path
from statistics import median
from typing import Any, Final

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from flowledger._wire import format_ts, new_event_id  # noqa: E402
from flowledger.receiver._config import IngestLimits  # noqa: E402
from flowledger.receiver._validate import prepare_event  # noqa: E402
from flowledger.receiver.store._canonical import GENESIS_HASH, canonical  # noqa: E402
from flowledger.receiver.store._entry import entry_bytes, payload_hash  # noqa: E402
from flowledger.receiver.store._event import PreparedEvent  # noqa: E402
from flowledger.receiver.store._fold import NODE_COLUMNS, RUN_COLUMNS, fold_node, fold_run  # noqa: E402
from flowledger.receiver.store._merkle import Frontier  # noqa: E402
from flowledger.receiver.store._migrations import migrate  # noqa: E402
from flowledger.receiver.store._tree import stored_nodes  # noqa: E402

LEDGER_INSERT = (
    "INSERT INTO ledger (seq, event_id, project, run_id, kind, ts, producer_id, producer_seq, received_at, "
    "payload_hash, prev_hash, hash, entry)"
)
LEDGER_WIDTH = 13
WITHOUT_LIFECYCLE = "this tree without the lifecycle steps"
WITHOUT_FORMAT = "this tree without the Merkle tree and payload split"
LEFT_OUT: Final = {
    WITHOUT_FORMAT: "merkle,payload-split",
    WITHOUT_LIFECYCLE: "merkle,payload-split,purge-bookkeeping",
}
"""The lifecycle's steps each ``--lifecycle`` receiver leaves out (see ``benchmarks/ingest_path.py``)."""
PAYLOAD_INSERT = "INSERT INTO payloads (seq, body)"
NODE_INSERT = "INSERT INTO merkle_nodes (level, idx, hash)"


def ledger_row(
    seq: int, event: dict[str, Any], ts: str, body: bytes, prev: bytes, received: str
) -> tuple[tuple[Any, ...], bytes]:
    """The ledger row of one event (format 3, the entry kept as its fields, as the SQLite store writes it) and its
    hash, which is also its Merkle leaf."""
    # Imported here: the benchmark's children import this module beside a baseline tree's flowledger, which may
    # be older than ledger format 3.
    from flowledger.receiver.store._entry import ENTRY_FORMAT, entry_hash, kept_as_fields

    digest = payload_hash(body)
    entry = entry_bytes(
        seq=seq,
        event_id=event["event_id"],
        run_id=event["run_id"],
        kind=event["kind"],
        ts=ts,
        project=event.get("project"),
        producer_id=event["producer_id"],
        producer_seq=event["producer_seq"],
        payload_sha256=digest,
    )
    project = event.get("project") or ""
    row = (
        seq, event["event_id"], project, event["run_id"], event["kind"], ts, event["producer_id"],
        event["producer_seq"], received, digest, prev,
    )  # fmt: skip
    digest = entry_hash(prev, entry)
    return (*row, digest, kept_as_fields(ENTRY_FORMAT)), digest


EVENTS_PER_RUN = 9
NODES = ("fetch", "price", "decide")


def build_runs(count: int, projects: int = 0) -> list[dict[str, Any]]:
    """Events of ``count`` runs, as an SDK process would emit them (over ``projects`` projects in turn; none: 0)."""
    producer = new_event_id()
    producer_seq = 0
    events: list[dict[str, Any]] = []
    clock = time.time_ns()
    for number in range(count):
        run_id, trace_id, run_span = new_event_id(), secrets.token_hex(16), secrets.token_hex(8)
        project = f"project-{number % projects}" if projects else None
        seq = 0

        def emit(kind: str, data: dict[str, Any], run_id: str = run_id, project: str | None = project) -> None:
            nonlocal seq, producer_seq, clock
            clock += 1_000_000
            events.append(
                {
                    "v": 1,
                    "event_id": new_event_id(),
                    "kind": kind,
                    "run_id": run_id,
                    "seq": seq,
                    "ts": format_ts(clock),
                    "producer_id": producer,
                    "producer_seq": producer_seq,
                    "project": project,
                    "data": data,
                }
            )
            seq += 1
            producer_seq += 1

        started = format_ts(clock)
        emit(
            "run_started",
            {
                "workflow_id": "order-intake",
                "workflow_name": "Order intake",
                "trigger_type": "manual",
                "trigger_data": {"order": 42},
                "dry_run": False,
                "trace_id": trace_id,
                "span_id": run_span,
                "heartbeat_interval_s": 15.0,
            },
        )
        for node in NODES:
            span = secrets.token_hex(8)
            node_start = format_ts(clock)
            common = {"node_id": node, "span_id": span, "parent_span_id": run_span, "attempt": 1}
            emit("node_started", {**common, "input": {"order": 42, "items": [1, 2, 3]}})
            emit(
                "node_finished",
                {**common, "status": "succeeded", "started_at": node_start, "duration_ms": 1.5, "output": {"ok": True}},
            )
        emit("heartbeat", {})
        emit(
            "run_finished",
            {
                "status": "succeeded",
                "started_at": started,
                "duration_ms": 9.0,
                "cost": {"tokens": 10, "tool_calls": 1, "external_requests": 0, "usd": 0.001},
            },
        )
    return events


def client(url: str, runs: int, batch: int, ready: Any, go: Any, results: Any) -> None:
    """One client process: build and encode first, then post as fast as the receiver answers."""
    events = build_runs(runs)
    bodies = [json.dumps({"events": events[i : i + batch]}).encode() for i in range(0, len(events), batch)]
    # The client is made and its connection opened before the start: making one loads the TLS trust store
    # (about 30 ms of CPU) and the first request imports the HTTP stack; that is set-up, not posting, and would
    # otherwise take a core from the receiver while it is measured.
    with httpx.Client(timeout=60) as http:
        http.get(f"{url}/healthz")
        ready.wait()
        go.wait()
        cpu_started = time.process_time()
        retries = 0
        for body in bodies:
            while True:
                answer = http.post(f"{url}/v1/events", content=body, headers={"content-type": "application/json"})
                if answer.status_code == 200:
                    break
                retries += 1
                time.sleep(float(answer.headers.get("retry-after", "0.05")))
        cpu_spent = time.process_time() - cpu_started
    results.put((len(events), retries, cpu_spent))


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """User plus system CPU time so far of a process (all its threads), or of one of its threads, from /proc.

    0 where /proc has no such entry (another operating system).
    """
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    try:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU time so far of each thread of a process, by the thread's name and id, from /proc (empty elsewhere).

    Python 3.14 and later name their threads for the system (the event loop's is the process's own name);
    earlier ones leave every thread the process's name."""
    threads: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                name = (task / "comm").read_text().strip()
                label = "event loop" if task.name == str(pid) else f"{name} ({task.name})"
                threads[label] = cpu_seconds(pid, int(task.name))
    return threads


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raw_sqlite(events: list[dict[str, Any]], path: Path) -> float:
    """Seconds for one executemany of these events' ledger rows into a fresh database (hashes precomputed)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    migrate(conn)
    rows, payloads = [], []
    prev = GENESIS_HASH
    received = format_ts(time.time_ns())
    for seq, event in enumerate(events, 1):
        body = canonical(event)
        row, prev = ledger_row(seq, event, event["ts"], body.encode(), prev, received)
        rows.append(row)
        payloads.append((seq, body))
    started = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany(f"{LEDGER_INSERT} VALUES ({', '.join('?' * LEDGER_WIDTH)})", rows)
    conn.executemany(f"{PAYLOAD_INSERT} VALUES (?, ?)", payloads)
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def raw_sqlite_all(events: list[dict[str, Any]], path: Path, batch: int) -> float:
    """Seconds to write every row the receiver writes for these events, with nothing else to do.

    Ledger rows, payloads, Merkle tree nodes, run and node-attempt projection
    rows and producer counts, folded and hashed beforehand, then written the receiver's way: one
    transaction per ``batch`` events, multi-row inserts. The floor that
    SQLite alone puts under end-to-end ingest on this machine.
    """
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA cache_size=-65536")  # as the receiver's writer
    migrate(conn)
    received = format_ts(time.time_ns())
    width = len(RUN_COLUMNS), len(NODE_COLUMNS)
    run_row, node_row = attrgetter(*RUN_COLUMNS), attrgetter(*NODE_COLUMNS)
    plan = []
    prev, seq, tree = GENESIS_HASH, 0, Frontier()
    for start in range(0, len(events), batch):
        ledger_rows: list[tuple[Any, ...]] = []
        payload_rows: list[tuple[Any, ...]] = []
        node_rows_: list[tuple[Any, ...]] = []
        runs: dict[str, Any] = {}
        nodes: dict[tuple[str, str], Any] = {}
        for index, raw in enumerate(events[start : start + batch]):
            event = prepare_event(raw, index, IngestLimits(), None, plain_floats=True)
            assert isinstance(event, PreparedEvent)
            seq += 1
            event.seq = seq
            row, prev = ledger_row(seq, raw, event.ts, event.body_bytes, prev, received)
            ledger_rows.append(row)
            payload_rows.append((seq, event.body))
            node_rows_ += stored_nodes(tree.append(prev))  # a format-3 entry's hash is its leaf
            runs[event.run_id] = fold_run(runs.get(event.run_id), event)
            if "span_id" in event.data:
                key = (event.run_id, event.data["span_id"])
                nodes[key] = fold_node(nodes.get(key), event)
        producers = [(events[start]["producer_id"], seq, len(ledger_rows))]
        plan.append(
            (
                ledger_rows,
                payload_rows,
                node_rows_,
                [run_row(r) for r in runs.values()],
                [node_row(n) for n in nodes.values()],
                producers,
            )
        )

    def insert(head: str, rows: list[Any], width: int, tail: str = "") -> None:
        for at in range(0, len(rows), 256):
            part = rows[at : at + 256]
            values = ", ".join(["(" + ", ".join("?" * width) + ")"] * len(part))
            conn.execute(f"{head} VALUES {values}{tail}", [v for row in part for v in row])

    started = time.perf_counter()
    for ledger_rows, payload_rows, tree_rows, run_rows, node_rows, producers in plan:
        conn.execute("BEGIN IMMEDIATE")
        insert(LEDGER_INSERT, ledger_rows, LEDGER_WIDTH)
        insert(PAYLOAD_INSERT, payload_rows, 2)
        if tree_rows:
            insert(NODE_INSERT, tree_rows, 3)
        insert(f"INSERT OR REPLACE INTO runs ({', '.join(RUN_COLUMNS)})", run_rows, width[0])
        insert(f"INSERT OR REPLACE INTO node_runs ({', '.join(NODE_COLUMNS)})", node_rows, width[1])
        insert(
            "INSERT INTO producers (producer_id, max_seq, events)",
            producers,
            3,
            " ON CONFLICT (producer_id, ifnull(project, '')) DO UPDATE SET max_seq = excluded.max_seq, "
            "events = events + excluded.events",
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


_PLAIN_VALUES = (int, float, str, bytes, type(None))


def capture_statements(events: list[dict[str, Any]], path: Path, batch: int) -> list[tuple[str, str, Any]]:
    """Every statement this tree's SQLite store runs on its writer to ingest ``events``, with its parameters.

    The events are appended in process, ``batch`` at a time, as the ingest route appends a commit group;
    the writer connection's ``execute``, ``executemany`` and ``executescript``, and those of the
    ``ThreadConnection`` its ingest transactions run through, are wrapped to note what they run, each
    parameter already adapted to what sqlite3 binds (the store's adapters applied). Reads
    (``execute_fetchall``) are not noted: the line made from this writes the rows and does nothing else.
    """
    import asyncio

    import aiosqlite

    from flowledger.receiver.ingest._batch import decode_batch
    from flowledger.receiver.store._on_thread import ThreadConnection
    from flowledger.receiver.store._sqlite import SqliteStore

    noted: list[tuple[str, str, Any]] = []

    def plain(params: Any) -> list[Any]:
        return [v if type(v) in _PLAIN_VALUES else sqlite3.adapt(v, sqlite3.PrepareProtocol) for v in params or ()]

    def noting(conn: aiosqlite.Connection) -> None:
        execute, executemany, executescript = conn.execute, conn.executemany, conn.executescript

        def one(sql: str, parameters: Any = None) -> Any:
            noted.append(("one", sql, plain(parameters)))
            return execute(sql, parameters)

        def many(sql: str, rows: Any) -> Any:
            rows = [plain(row) for row in rows]
            noted.append(("many", sql, rows))
            return executemany(sql, rows)

        def script(sql: str) -> Any:
            noted.append(("script", sql, None))
            return executescript(sql)

        conn.execute, conn.executemany, conn.executescript = one, many, script  # type: ignore[method-assign]

    # The ingest transaction runs on the connection's own thread through a ThreadConnection: note those too.
    thread_execute, thread_executemany = ThreadConnection.execute, ThreadConnection.executemany

    async def thread_one(self: ThreadConnection, sql: str, parameters: Any = None, /) -> Any:
        noted.append(("one", sql, plain(parameters)))
        return await thread_execute(self, sql, parameters)

    async def thread_many(self: ThreadConnection, sql: str, rows: Any, /) -> Any:
        rows = [plain(row) for row in rows]
        noted.append(("many", sql, rows))
        return await thread_executemany(self, sql, rows)

    async def ingest() -> None:
        store = SqliteStore(path)
        await store.open()
        try:
            assert store._writer is not None
            noting(store._writer)
            limits = IngestLimits()
            for start in range(0, len(events), batch):
                body = json.dumps({"events": events[start : start + batch]}).encode()
                decoded = decode_batch(body, limits)
                prepared = [
                    prepare_event(raw, index, limits, None, plain_floats=decoded.plain_floats)
                    for index, raw in enumerate(decoded.events)
                ]
                assert all(isinstance(event, PreparedEvent) for event in prepared)
                await store.append(prepared)  # type: ignore[arg-type]
        finally:
            await store.close()

    ThreadConnection.execute, ThreadConnection.executemany = thread_one, thread_many  # type: ignore[method-assign]
    try:
        asyncio.run(ingest())
    finally:
        ThreadConnection.execute = thread_execute  # type: ignore[method-assign]
        ThreadConnection.executemany = thread_executemany  # type: ignore[method-assign]
    return noted


def _table_digests(path: Path) -> dict[str, str]:
    import hashlib

    conn = sqlite3.connect(path)
    try:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")]
        digests = {}
        for table in tables:
            try:
                rows = conn.execute(f'SELECT * FROM "{table}"').fetchall()  # both files were written alike
            except sqlite3.Error:  # a virtual table's shadow that cannot be read alone
                continue
            digests[table] = hashlib.sha256(repr(rows).encode()).hexdigest()
        return digests
    finally:
        conn.close()


def raw_sqlite_statements(statements: list[tuple[str, str, Any]], written: Path, path: Path) -> float:
    """Seconds for bare sqlite3 to run the receiver's own write statements (from :func:`capture_statements`).

    A fresh file made as the receiver makes one, the writer's settings applied, then every noted
    statement with its parameters in order, on one connection keeping as many prepared statements as the
    receiver's writer: the same rows, triggers and indexes, with no Python between the statements but the
    loop that runs them. Stops when a table differs from ``written`` (the file the statements were noted
    on), so the line always writes exactly what the receiver wrote.
    """
    from flowledger.receiver.store._bulk import STATEMENT_CACHE
    from flowledger.receiver.store._sqlite import prepare_file

    prepare_file(path)
    conn = sqlite3.connect(path, isolation_level=None, cached_statements=STATEMENT_CACHE)
    first = next(i for i, (_, sql, _) in enumerate(statements) if sql.startswith("BEGIN"))
    for _, sql, _ in statements[:first]:  # the writer's settings (PRAGMAs), before the clock starts
        conn.execute(sql)
    run: dict[str, Callable[[str, Any], object]] = {"one": conn.execute, "many": conn.executemany}
    started = time.perf_counter()
    for how, sql, params in statements[first:]:
        if how == "script":
            conn.executescript(sql)
        else:
            run[how](sql, params)
    elapsed = time.perf_counter() - started
    conn.close()
    mine, theirs = _table_digests(path), _table_digests(written)
    if mine != theirs:
        differ = sorted(t for t in mine.keys() | theirs.keys() if mine.get(t) != theirs.get(t))
        sys.exit(f"the replayed statements wrote other rows than the receiver's store in {', '.join(differ)}")
    return elapsed


def postgres_cpu_seconds() -> float:
    """CPU time so far of every PostgreSQL server process on the machine (its backends do the database's work)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                comm = (entry / "comm").read_text().strip()
            except OSError:
                continue
            if comm == "postgres":
                total += cpu_seconds(int(entry.name))
    return total


def fresh_postgres_database(server_url: str) -> str:
    """The URL of a new, empty database on the server of ``server_url``."""
    import asyncio

    import asyncpg

    name = f"flowledger_bench_{secrets.token_hex(4)}"

    async def create() -> None:
        conn = await asyncpg.connect(server_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    return server_url.rsplit("/", 1)[0] + "/" + name


def stored_events(target: str) -> int:
    """Rows in the ledger of a SQLite file or a PostgreSQL database."""
    if not target.startswith("postgresql://"):
        return int(sqlite3.connect(target).execute("SELECT count(*) FROM ledger").fetchone()[0])
    import asyncio

    import asyncpg

    async def count() -> int:
        conn = await asyncpg.connect(target)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM ledger"))
        finally:
            await conn.close()

    return asyncio.run(count())


def measure(
    src: Path,
    clients: int,
    runs_per_client: int,
    batch: int,
    tmp: Path,
    *,
    postgres_server: str | None = None,
    receivers: int = 1,
    left_out: str = "",
    python: str = sys.executable,
) -> dict[str, Any]:
    """Serve ``receivers`` receivers of the source tree ``src`` on a fresh database (SQLite, or PostgreSQL on
    ``postgres_server``) and post to them, the clients split between them; return the figures.

    ``left_out``: the ledger lifecycle's steps the receiver's SQLite store leaves out (comma-separated, as
    ``benchmarks/ingest_path.py`` names them); its ledger then does not verify, and is not verified.
    ``python``: the interpreter that serves (the ledger is verified by this one)."""
    db = fresh_postgres_database(postgres_server) if postgres_server else str(tmp / f"bench-{secrets.token_hex(4)}.db")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]))
    servers: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    try:
        for _ in range(receivers):
            port = free_port()
            urls.append(f"http://127.0.0.1:{port}")
            command = [python, "-c", "from flowledger.cli import main; main()"]
            if left_out:
                command = [python, str(ROOT / "benchmarks" / "ingest_path.py"), "--serve-without", left_out]
            servers.append(
                subprocess.Popen(
                    [*command, *("serve", "--db", db, "--port", str(port), "--log-level", "warning")], env=env
                )
            )
        for url in urls:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        sys.exit("the receiver did not start")
                    time.sleep(0.05)
        ctx = multiprocessing.get_context("spawn")
        ready = ctx.Barrier(clients + 1)
        go = ctx.Event()
        results = ctx.Queue()
        procs = [
            ctx.Process(target=client, args=(urls[i % receivers], runs_per_client, batch, ready, go, results))
            for i in range(clients)
        ]
        for proc in procs:
            proc.start()
        ready.wait()  # every client has built and encoded its batches
        cpu_before = sum(cpu_seconds(server.pid) for server in servers)
        loop_before = sum(cpu_seconds(server.pid, server.pid) for server in servers)  # main threads: event loops
        threads_before = [thread_cpu_seconds(server.pid) for server in servers]
        pg_before = postgres_cpu_seconds() if postgres_server else 0.0
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        go.set()
        outcomes = [results.get(timeout=600) for _ in procs]
        elapsed = time.perf_counter() - started
        cpu_used = sum(cpu_seconds(server.pid) for server in servers) - cpu_before
        loop_used = sum(cpu_seconds(server.pid, server.pid) for server in servers) - loop_before
        busiest = max(
            (
                (used - before.get(label, 0.0), label)
                for server, before in zip(servers, threads_before, strict=True)
                for label, used in thread_cpu_seconds(server.pid).items()
                if label != "event loop"
            ),
            default=(0.0, ""),
        )
        pg_used = postgres_cpu_seconds() - pg_before if postgres_server else 0.0
        load_after = os.getloadavg()[0]
        for proc in procs:
            proc.join()
        stored = stored_events(db)
        verify = subprocess.run(
            [sys.executable, "-c", "from flowledger.cli import main; main()", "verify", "--db", db],
            env=env,
            capture_output=True,
            text=True,
        )
        verified = (verify.stdout or verify.stderr).strip().splitlines()[:1]
        if left_out:
            verified = ["not verified: the lifecycle's steps were left out, so its entries are not the ledger format's"]
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=30)
    return {
        "pg_cpu": pg_used,
        "sent": sum(o[0] for o in outcomes),
        "retries": sum(o[1] for o in outcomes),
        "client_cpu": sum(o[2] for o in outcomes),
        "elapsed": elapsed,
        "cpu_used": cpu_used,
        "loop_used": loop_used,
        "busiest": (busiest[0] / elapsed, busiest[1]),
        "load": (load_before, load_after),
        "stored": stored,
        "verify": verified[0] if verified else "",
    }


def interpreter(python: str) -> str:
    """What ``python`` says it is: its version and whether it runs without the global interpreter lock."""
    probe = (
        "import platform, sys; free = not getattr(sys, '_is_gil_enabled', lambda: True)(); "
        "print(platform.python_implementation(), platform.python_version() + (' free-threaded' if free else ''))"
    )
    try:
        said = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        sys.exit(f"--python {python}: cannot run it ({exc})")
    return said.stdout.strip()


def served_by(pythons: list[str]) -> dict[str, str]:
    """The label of this tree served by each interpreter: what it says it is, and its path where two say the same."""
    said = {python: f"this tree on {interpreter(python)}" for python in pythons}
    alike = [label for label in said.values() if list(said.values()).count(label) > 1]
    return {python: f"{label} ({python})" if label in alike else label for python, label in said.items()}


def export_revision(revision: str, into: Path) -> Path:
    """The ``src`` folder of a git revision of this repository, unpacked into ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", revision, "src"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into / "src"


def report(label: str, runs: list[dict[str, Any]]) -> None:
    """Print the medians of the runs of one receiver, each with its range."""

    def line(values: list[float], unit: str, width: int = 10, fmt: str = ",.0f") -> str:
        return f"{median(values):>{width}{fmt}} {unit}  [{min(values):{fmt}} to {max(values):{fmt}}]"

    sent = runs[0]["sent"]
    stored = ", ".join(str(f["stored"]) for f in runs)
    print(f"[{label}] events sent: {sent} per run  stored: {stored}  (503 retries: {sum(f['retries'] for f in runs)})")
    print(f"[{label}] verify: {runs[-1]['verify']}")
    print(f"[{label}] end to end over HTTP : {line([f['sent'] / f['elapsed'] for f in runs], 'events/s')}")
    if all(f["cpu_used"] for f in runs):
        per_event = [f["cpu_used"] / f["sent"] * 1e6 for f in runs]
        loop = [f["loop_used"] / f["sent"] * 1e6 for f in runs]
        loads = ", ".join(f"{f['load'][0]:.1f}-{f['load'][1]:.1f}" for f in runs)
        print(f"[{label}] receiver CPU         : {line(per_event, 'us/event', fmt='.1f')}  (load average {loads})")
        print(
            f"[{label}]   event-loop thread  : {line(loop, 'us/event', fmt='.1f')}  (HTTP, parse, validate, "
            "canonical form; also the fold, hash chain, entries and Merkle tree on PostgreSQL, and on SQLite in "
            f"trees before commit groups ran on the writer's thread; its ceiling: {1e6 / median(loop):,.0f} "
            "events/s on a free core)"
        )
        others = [a - b for a, b in zip(per_event, loop, strict=True)]
        where = (
            "asyncpg runs on the event loop"
            if any(f["pg_cpu"] for f in runs)
            else "the SQLite writer's thread: a commit group's reads, fold, chain, entries and Merkle tree, and its "
            "statement thread: its writes (on the writer's thread before it had one; only the SQL in trees "
            "before commit groups ran there)"
        )
        print(f"[{label}]   other threads      : {line(others, 'us/event', fmt='.1f')}  ({where})")
        loop_busy = [f["loop_used"] / f["elapsed"] * 100 for f in runs]
        thread_busy = [f["busiest"][0] * 100 for f in runs]
        print(
            f"[{label}]   busy, of the wall time: event loop {line(loop_busy, '%', width=3)}, busiest other thread "
            f"{line(thread_busy, '%', width=3)} ({runs[-1]['busiest'][1]}; a stage near 100% bounds the rate, "
            "none near it: the hand-offs between them, or the interpreter lock, do)"
        )
    if any(f["pg_cpu"] for f in runs):
        server = [f["pg_cpu"] / f["sent"] * 1e6 for f in runs]
        print(
            f"[{label}] PostgreSQL server CPU: {line(server, 'us/event', fmt='.1f')}  (its backends, on this machine)"
        )
    client = [f["client_cpu"] / f["sent"] * 1e6 for f in runs]
    print(
        f"[{label}] client processes CPU : {line(client, 'us/event', fmt='.1f')}  (posting the prepared bodies; "
        f"they share the machine's {os.cpu_count()} cores with the receiver)"
    )


def settle(tmp: Path) -> None:
    """Remove the databases the last measurement wrote and wait until the disk has the rest.

    Without it the next receiver ran while the kernel wrote back the tens of megabytes the one before it left
    dirty (the references' files most of all): the first setup of every round after the first came out up to a
    fifth slower, since the same setup always ran first.
    """
    for db in tmp.glob("*.db*"):
        if db.name.startswith(("raw-", "all-", "same-", "bench-")):
            db.unlink()
    os.sync()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="at least this many events in total")
    parser.add_argument("--clients", type=int, default=4, help="concurrent client processes")
    parser.add_argument("--batch", type=int, default=1000, help="events per request")
    parser.add_argument("--baseline", default=None, help="also measure the receiver of this git revision")
    parser.add_argument("--repeat", type=int, default=1, help="alternate the measurements this many times")
    parser.add_argument(
        "--engine",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="postgres: also one and two receivers on one PostgreSQL database, beside SQLite",
    )
    parser.add_argument(
        "--postgres-url", default=None, help="a PostgreSQL server to create databases on (default: a throwaway one)"
    )
    parser.add_argument(
        "--lifecycle",
        action="store_true",
        help="also this tree without the Merkle tree and payload split, and without those and the purge "
        "bookkeeping (see benchmarks/ingest_path.py), in the same rounds",
    )
    parser.add_argument(
        "--python",
        action="append",
        default=[],
        metavar="INTERPRETER",
        help="also this tree served by another Python interpreter (a free-threaded build, say), in the same "
        "rounds; repeatable",
    )
    args = parser.parse_args()
    if args.lifecycle and (args.engine != "sqlite" or args.baseline is not None):
        parser.error("--lifecycle measures this tree on SQLite; leave out --baseline and --engine postgres")
    if args.engine == "postgres" and args.baseline is not None:
        parser.error("--baseline compares receivers on SQLite; leave it out with --engine postgres")
    served = served_by(args.python)
    runs_per_client = -(-args.events // (EVENTS_PER_RUN * args.clients))
    total = runs_per_client * EVENTS_PER_RUN * args.clients

    with tempfile.TemporaryDirectory() as tmp_name, contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        trees = {"this tree": ROOT / "src"}
        if args.baseline is not None:
            (tmp / "baseline").mkdir()
            trees = {f"baseline {args.baseline}": export_revision(args.baseline, tmp / "baseline"), **trees}
        setups: dict[str, tuple[Path, str | None, int, str]] = {
            label: (src, None, 1, sys.executable) for label, src in trees.items()
        }
        if args.lifecycle:
            setups = dict.fromkeys(LEFT_OUT, (ROOT / "src", None, 1, sys.executable)) | setups
        for python, label in served.items():
            setups[label] = (ROOT / "src", None, 1, python)
        if args.engine == "postgres":
            server = args.postgres_url
            if server is None:
                sys.path.insert(0, str(ROOT))
                from tests._postgres import postgres_cluster

                server = stack.enter_context(postgres_cluster())
            setups = {
                "sqlite, 1 receiver": (ROOT / "src", None, 1, sys.executable),
                "postgres, 1 receiver": (ROOT / "src", server, 1, sys.executable),
                "postgres, 2 receivers": (ROOT / "src", server, 2, sys.executable),
            }
        runs: dict[str, list[dict[str, Any]]] = {label: [] for label in setups}
        raw_runs: list[float] = []
        all_runs: list[float] = []
        sample = build_runs(runs_per_client * args.clients)
        statement_runs: list[float] = []
        statements = capture_statements(sample, tmp / "noted.db", args.batch)
        order = list(setups.items())
        for round_ in range(args.repeat):
            turn = round_ % len(order)  # each setup runs first in its turn (see settle)
            for label, (src, postgres_server, receivers, python) in order[turn:] + order[:turn]:
                figures = measure(
                    src,
                    args.clients,
                    runs_per_client,
                    args.batch,
                    tmp,
                    postgres_server=postgres_server,
                    receivers=receivers,
                    left_out=LEFT_OUT.get(label, ""),
                    python=python,
                )
                if figures["stored"] != figures["sent"]:
                    sys.exit(f"[{label}] the ledger does not hold every event sent")
                runs[label].append(figures)
                settle(tmp)
            # The SQLite references between the receivers' runs, so that all see the same machine.
            raw_runs.append(raw_sqlite(sample, tmp / f"raw-{round_}.db"))
            all_runs.append(raw_sqlite_all(sample, tmp / f"all-{round_}.db", args.batch))
            statement_runs.append(raw_sqlite_statements(statements, tmp / "noted.db", tmp / f"same-{round_}.db"))
            settle(tmp)

    print(
        f"cores: {os.cpu_count()}  clients: {args.clients}  batch: {args.batch} events/request  repeat: {args.repeat}"
        " (medians, with the range in brackets)"
    )
    for label, measured in runs.items():
        report(label, measured)
    raw_rate = median(total / s for s in raw_runs)
    all_rate = median(total / s for s in all_runs)
    rates = {label: median(f["sent"] / f["elapsed"] for f in measured) for label, measured in runs.items()}
    if args.engine == "postgres":
        reference = rates["sqlite, 1 receiver"]
        for label, rate in rates.items():
            print(f"[{label}] / sqlite, 1 receiver: {rate / reference:.2f}")
    elif args.lifecycle:
        this_rate = rates["this tree"]
        cpu = {label: median(f["cpu_used"] / f["sent"] for f in measured) for label, measured in runs.items()}
        for label, what in ((WITHOUT_FORMAT, "Merkle tree and payload split"), (WITHOUT_LIFECYCLE, "lifecycle steps")):
            ratio = this_rate / rates[label]
            print(
                f"{what}: this tree's events/s are {ratio:.3f} of those without them ({1 - ratio:.1%} slower), "
                f"its receiver CPU per event {cpu['this tree'] / cpu[label]:.3f} of theirs (medians)"
            )
    elif args.baseline is not None:
        base_label = f"baseline {args.baseline}"
        print(f"this tree / {base_label}: {rates['this tree'] / rates[base_label]:.2f} of the baseline's events/s")
    for label in served.values():
        print(f"[{label}] / this tree: {rates[label] / rates['this tree']:.2f} of the events/s (medians)")
    print(
        f"raw sqlite3 executemany: {raw_rate:>8,.0f} events/s  {_spread([total / s for s in raw_runs])}"
        " (ledger and payload rows only)"
    )
    print(
        f"raw sqlite3, all rows  : {all_rate:>8,.0f} events/s  {_spread([total / s for s in all_runs])} (ledger, "
        "payloads, tree nodes, runs, node attempts and producers, folded and hashed beforehand; the most SQLite "
        "alone allows here)"
    )
    same_rate = median(total / s for s in statement_runs)
    print(
        f"raw sqlite3, statements: {same_rate:>8,.0f} events/s  {_spread([total / s for s in statement_runs])} (every"
        " write statement this tree's store runs for these events, with its parameters, noted in process and run"
        " again on a fresh file: the very same rows, statistics, search and error groups included)"
    )
    for label, rate in rates.items():
        print(f"[{label}] end to end / all rows: {rate / all_rate:.2f}, / statements: {rate / same_rate:.2f}")


def _spread(values: list[float]) -> str:
    return f"[{min(values):,.0f} to {max(values):,.0f}]"


if __name__ == "__main__":
    main()
