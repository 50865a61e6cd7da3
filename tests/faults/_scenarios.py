"""The fault scenarios: each drives the generated workflow and the receiver through one kind of fault.

Every scenario ends the same way: the fault is lifted, a producer with no
runs of its own replays what the SDK spooled (``flowledger.flush``), the
receivers stop, and the ledger is read for the runs the producers made.
Figures: events the SDK *produced* (its ``emitted`` counter), events
*stored* in the ledger for those runs, events the SDK *counted* as lost
(``dropped``), events really *missing* (produced minus stored), events
*duplicated* in the ledger, the median time of one workflow run and what
it adds to the same run without a fault, how long the exit was held, and
the peak resident memory of the producer and of the receiver.
"""

from __future__ import annotations

import shutil
import sqlite3
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import httpx

from tests.faults._proxy import FaultProxy, ProxyMode
from tests.faults._world import (
    ProducerResult,
    ReceiverProc,
    RssSampler,
    collect_producer,
    free_port,
    read_ledger,
    run_producer,
    spooled_event_ids,
    start_producer,
    verify,
)

__all__ = ["SCALES", "SCENARIOS", "Outcome", "Scale", "World", "answers", "clock_skew"]

_DRAIN_FLUSH_S: Final = "20"
_DISK_ROOM: Final = 16 * 1024
"""How far past its size at start any file of the receiver may grow in the full-disk scenario."""
_SPOOL_ROOM: Final = 4 * 1024
"""The largest file the producer may write in the full-spool scenario."""


@dataclass(frozen=True)
class Scale:
    """How big each scenario is: CI runs the small one, ``tasks.py faults`` the long one."""

    runs: int
    kills: int
    soak_s: float


SCALES: Final = {"ci": Scale(runs=100, kills=3, soak_s=120.0), "long": Scale(runs=1000, kills=10, soak_s=600.0)}


@dataclass
class Outcome:
    """One scenario's figures (see the module docstring)."""

    name: str
    fault: str
    runs: int = 0
    runs_ok: int = 0
    produced: int | None = 0
    stored: int = 0
    lost_counted: int | None = 0
    duplicated: int = 0
    spooled: int = 0
    """Events the SDK wrote to its spool (delivered later, by a replay)."""
    left_in_spool: int = 0
    """Events still in the spool folders at the end and not stored (not lost: the next process replays them)."""
    spans_dropped: int = 0
    """Spans the SDK's span export gave up on (spans are not spooled; the events are the record)."""
    run_ms: float = float("nan")
    added_ms: float = float("nan")
    exit_hold_s: float = float("nan")
    producer_peak_mib: float = float("nan")
    receiver_peak_mib: float = float("nan")
    chain_ok: bool = True
    expected_loss: str = ""
    facts: dict[str, float] = field(default_factory=dict)
    """Figures of this scenario alone (time to stuck, runs seen stuck while alive, RSS quarters...)."""
    notes: list[str] = field(default_factory=list)
    rss_series_mib: list[tuple[float, float]] = field(default_factory=list)

    @property
    def missing(self) -> int | None:
        """Produced, and neither stored nor waiting in a spool."""
        return None if self.produced is None else self.produced - self.stored - self.left_in_spool


@dataclass
class World:
    """What every scenario gets: a scratch folder, the generated module, the scale, the fault-free run time."""

    tmp: Path
    module: Path
    scale: Scale
    baseline_run_ms: float | None = None

    def folder(self, name: str) -> Path:
        path = self.tmp / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path


def _median_ms(values: Sequence[float]) -> float:
    return statistics.median(values) * 1000 if values else float("nan")


def _drain(world: World, receiver: ReceiverProc, spool: Path) -> ProducerResult:
    """Replay what the producers spooled, straight to the receiver (again while some is left, three times at most)."""
    drained = run_producer(world.module, receiver.url, spool, runs=0, settings={"FAULTS_FLUSH_S": _DRAIN_FLUSH_S})
    for _ in range(2):
        if not spooled_event_ids(spool):
            break
        drained = run_producer(world.module, receiver.url, spool, runs=0, settings={"FAULTS_FLUSH_S": _DRAIN_FLUSH_S})
    return drained


def _outcome(
    world: World,
    name: str,
    fault: str,
    db: Path,
    producers: Sequence[ProducerResult],
    receivers: Sequence[ReceiverProc],
    *,
    expected_loss: str = "",
) -> Outcome:
    for receiver in receivers:
        receiver.stop()
    run_ids = [run_id for p in producers for run_id in p.run_ids]
    ledger = read_ledger(db, run_ids)
    run_s = [s for p in producers for s in p.run_s]
    out = Outcome(
        name=name,
        fault=fault,
        runs=len(run_ids),
        runs_ok=sum(len(p.run_ids) for p in producers if p.returncode == 0),
        produced=sum(p.emitted for p in producers),
        stored=ledger.events,
        lost_counted=sum(p.dropped for p in producers),
        duplicated=ledger.duplicated,
        spooled=sum(int(p.final_stats.get("spooled", 0)) for p in producers),
        left_in_spool=len(set().union(*(spooled_event_ids(s) for s in db.parent.glob("spool*"))) - ledger.event_ids),
        spans_dropped=sum(int(p.final_stats.get("spans_dropped", 0)) for p in producers),
        run_ms=_median_ms(run_s),
        exit_hold_s=max((p.exit_hold_s for p in producers), default=float("nan")),
        producer_peak_mib=max((p.peak_rss_kib for p in producers), default=0) / 1024,
        receiver_peak_mib=max((r.memory.peak_kib for r in receivers), default=0) / 1024,
        chain_ok=verify(db),
        expected_loss=expected_loss,
    )
    if world.baseline_run_ms is not None:
        out.added_ms = out.run_ms - world.baseline_run_ms
    if out.left_in_spool:
        out.notes.append(f"{out.left_in_spool} events still in the spool after three replays")
    for p in producers:
        if p.returncode != 0:
            out.notes.append(f"a producer exited {p.returncode}: {p.stderr.strip()[-300:]}")
    succeeded = ledger.runs_by_status.get("succeeded", 0)
    if succeeded != len(run_ids):
        out.notes.append(f"runs by status: {ledger.runs_by_status} (of {len(run_ids)})")
    return out


# --- scenarios ---------------------------------------------------------------------


def baseline(world: World) -> Outcome:
    """No fault: the reference for the time a fault adds."""
    folder = world.folder("baseline")
    receiver = ReceiverProc(folder / "ledger.db").start()
    producer = run_producer(world.module, receiver.url, folder / "spool", runs=world.scale.runs)
    _drain(world, receiver, folder / "spool")  # what the bounded exit flush left in the spool
    out = _outcome(world, "baseline", "none", receiver.db, [producer], [receiver])
    world.baseline_run_ms = out.run_ms
    out.added_ms = 0.0
    return out


def receiver_kill_loop(world: World) -> Outcome:
    """The receiver SIGKILLed and restarted again and again while the workflow runs."""
    folder = world.folder("receiver-kill-loop")
    receiver = ReceiverProc(folder / "ledger.db").start()
    spool = folder / "spool"
    proc = start_producer(
        world.module,
        {
            "FLOWLEDGER_ENDPOINT": receiver.url,
            "FLOWLEDGER_SPOOL_DIR": str(spool),
            "FAULTS_RUNS": "0",
            "FAULTS_DURATION_S": str(world.scale.kills * 1.5 + 1.0),
            "FAULTS_PACE_S": "0.02",
        },
    )
    for _ in range(world.scale.kills):
        time.sleep(0.8)
        receiver.kill()
        time.sleep(0.3)
        receiver.start(wait=False)
        receiver.wait_ready()
    producer = collect_producer(proc)
    drain = _drain(world, receiver, spool)
    out = _outcome(
        world, "receiver SIGKILL loop", f"{world.scale.kills} kills, 0.8 s apart", receiver.db, [producer], [receiver]
    )
    out.facts["replayed_after_restart"] = int(drain.final_stats.get("replayed", 0))
    out.notes.append(f"replayed after the last restart: {drain.final_stats.get('replayed', 0)} events")
    return out


def _through_proxy(world: World, name: str, fault: str, mode: ProxyMode, **params: float) -> Outcome:
    folder = world.folder(name.replace(" ", "-"))
    receiver = ReceiverProc(folder / "ledger.db").start()
    proxy = FaultProxy(receiver.port).start()
    proxy.set(mode, **params)  # type: ignore[arg-type]
    spool = folder / "spool"
    try:
        producer = run_producer(world.module, f"http://127.0.0.1:{proxy.port}", spool, runs=world.scale.runs)
    finally:
        proxy.stop()
    _drain(world, receiver, spool)
    return _outcome(world, name, fault, receiver.db, [producer], [receiver])


def proxy_latency(world: World) -> Outcome:
    return _through_proxy(world, "latency", "50 ms each way on every chunk", ProxyMode.LATENCY, latency_s=0.05)


def proxy_resets(world: World) -> Outcome:
    return _through_proxy(world, "connection resets", "every other connection reset (RST)", ProxyMode.RESET)


def proxy_half_open(world: World) -> Outcome:
    return _through_proxy(world, "half-open", "requests read, never answered", ProxyMode.HALF_OPEN)


def proxy_slow_reads(world: World) -> Outcome:
    return _through_proxy(world, "slow reads", "request read 512 B every 20 ms", ProxyMode.SLOW_READ)


def proxy_blackhole(world: World) -> Outcome:
    return _through_proxy(world, "accepts, never answers", "connections accepted, never read", ProxyMode.BLACKHOLE)


def answers(code: int) -> Callable[[World], Outcome]:
    def scenario(world: World) -> Outcome:
        return _through_proxy(world, f"answers {code}", f"every request answered {code}", ProxyMode.STATUS, status=code)

    scenario.__name__ = f"answers_{code}"
    return scenario


def database_disk_full(world: World) -> Outcome:
    """The receiver's files cannot grow (RLIMIT_FSIZE): its writes fail; then the disk has room again."""
    folder = world.folder("database-disk-full")
    db = folder / "ledger.db"
    ReceiverProc(db).start().stop()  # created and migrated, then limited to a little more than that
    largest = max(p.stat().st_size for p in folder.glob("ledger.db*"))
    receiver = ReceiverProc(db, file_size_limit=largest + _DISK_ROOM).start()
    spool = folder / "spool"
    producer = run_producer(world.module, receiver.url, spool, runs=world.scale.runs)
    alive = receiver.proc is not None and receiver.proc.poll() is None
    receiver.stop()
    roomy = ReceiverProc(db, port=receiver.port).start()
    _drain(world, roomy, spool)
    out = _outcome(
        world,
        "database disk full",
        f"no file of the receiver grows {_DISK_ROOM // 1024} KiB past its start",
        db,
        [producer],
        [receiver, roomy],
    )
    out.facts["receiver_alive_while_full"] = float(alive)
    out.notes.append("the receiver stayed up while full" if alive else "the receiver exited while full")
    return out


def spool_disk_full(world: World) -> Outcome:
    """No receiver, and the producer cannot write its spool (RLIMIT_FSIZE): the workflow still succeeds."""
    folder = world.folder("spool-disk-full")
    port = free_port()
    spool = folder / "spool"
    producer = run_producer(
        world.module, f"http://127.0.0.1:{port}", spool, runs=world.scale.runs, file_size_limit=_SPOOL_ROOM
    )
    receiver = ReceiverProc(folder / "ledger.db", port=port).start()
    _drain(world, receiver, spool)
    return _outcome(
        world,
        "spool disk full",
        f"no receiver; producer files capped at {_SPOOL_ROOM // 1024} KiB",
        receiver.db,
        [producer],
        [receiver],
        expected_loss="what neither the receiver nor the full spool could take: dropped and counted",
    )


def producer_killed(world: World) -> Outcome:
    """The workflow process SIGKILLed mid-run: its run is marked stuck by the sweeper."""
    folder = world.folder("producer-killed")
    receiver = ReceiverProc(
        folder / "ledger.db",
        settings={"FLOWLEDGER_RECEIVER_STUCK_AFTER_S": "2", "FLOWLEDGER_RECEIVER_SWEEP_INTERVAL_S": "0.5"},
    ).start()
    proc = start_producer(
        world.module,
        {
            "FLOWLEDGER_ENDPOINT": receiver.url,
            "FLOWLEDGER_SPOOL_DIR": str(folder / "spool"),
            "FAULTS_RUNS": "1",
            "FAULTS_SLOW_NODE_S": "60",
            "FLOWLEDGER_HEARTBEAT_INTERVAL_S": "0.5",
            "FLOWLEDGER_BATCH_MAX_AGE_S": "0.2",
        },
    )
    run_id = _wait_for_run(receiver, "running", timeout_s=30)
    time.sleep(1.0)
    proc.kill()
    proc.communicate(timeout=10)  # reaped, its pipes closed
    killed_at = time.monotonic()
    _wait_for_run(receiver, "stuck", timeout_s=30)
    stuck_after = time.monotonic() - killed_at
    ledger = read_ledger(receiver.db, [run_id])
    receiver.stop()
    out = Outcome(
        name="workflow process SIGKILLed",
        fault="SIGKILL mid-node; sweeper: stuck after 2 s",
        runs=1,
        produced=None,
        stored=ledger.events,
        lost_counted=None,
        duplicated=ledger.duplicated,
        receiver_peak_mib=receiver.memory.peak_kib / 1024,
        chain_ok=verify(receiver.db),
        expected_loss="events the killed process still held in memory (at most one batch age, 0.2 s here)",
    )
    out.facts["stuck_after_kill_s"] = stuck_after
    out.notes.append(f"run marked stuck {stuck_after:.1f} s after the kill; runs by status: {ledger.runs_by_status}")
    return out


def _wait_for_run(receiver: ReceiverProc, status: str, *, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = httpx.get(f"{receiver.url}/api/runs", params={"status": status}, timeout=5).json()["runs"]
        if runs:
            return str(runs[0]["run_id"])
        time.sleep(0.1)
    raise AssertionError(f"no run became {status} within {timeout_s} s")


def clock_skew(skew_s: float) -> Callable[[World], Outcome]:
    def scenario(world: World) -> Outcome:
        folder = world.folder(f"clock-skew{skew_s:+.0f}")
        receiver = ReceiverProc(
            folder / "ledger.db",
            settings={"FLOWLEDGER_RECEIVER_STUCK_AFTER_S": "2", "FLOWLEDGER_RECEIVER_SWEEP_INTERVAL_S": "0.5"},
        ).start()
        proc = start_producer(
            world.module,
            {
                "FLOWLEDGER_ENDPOINT": receiver.url,
                "FLOWLEDGER_SPOOL_DIR": str(folder / "spool"),
                "FAULTS_RUNS": "3",
                "FAULTS_SLOW_NODE_S": "3",
                "FLOWLEDGER_HEARTBEAT_INTERVAL_S": "0.5",
                "FAULTS_CLOCK_SKEW_S": str(skew_s),
            },
        )
        stuck_seen: set[str] = set()
        while proc.poll() is None:
            with sqlite3.connect(receiver.db) as conn:
                stuck_seen |= {r for (r,) in conn.execute("SELECT run_id FROM runs WHERE status = 'stuck'")}
            time.sleep(0.2)
        producer = collect_producer(proc)
        _drain(world, receiver, folder / "spool")
        out = _outcome(
            world,
            f"clock skew {skew_s:+.0f} s",
            f"producer clock {skew_s:+.0f} s; runs of 3 s, stuck after 2 s without an event",
            receiver.db,
            [producer],
            [receiver],
        )
        out.added_ms = float("nan")  # runs of 3 s: not comparable with the baseline
        with sqlite3.connect(receiver.db) as conn:
            negative = conn.execute("SELECT count(*) FROM runs WHERE duration_ms < 0").fetchone()[0]
        out.facts["stuck_while_alive"] = len(stuck_seen)
        out.facts["negative_durations"] = negative
        out.notes.append(f"runs seen stuck while alive: {len(stuck_seen)}; negative durations: {negative}")
        return out

    scenario.__name__ = f"clock_skew_{'plus' if skew_s > 0 else 'minus'}_{abs(skew_s):.0f}"
    return scenario


def two_receivers(world: World) -> Outcome:
    """Two receiver processes on one SQLite file, each fed by its own producer at the same time."""
    folder = world.folder("two-receivers")
    db = folder / "ledger.db"
    first = ReceiverProc(db).start()
    second = ReceiverProc(db).start()
    procs = [
        start_producer(
            world.module,
            {
                "FLOWLEDGER_ENDPOINT": receiver.url,
                "FLOWLEDGER_SPOOL_DIR": str(folder / f"spool-{n}"),
                "FAULTS_RUNS": str(world.scale.runs),
            },
        )
        for n, receiver in enumerate((first, second))
    ]
    producers = [collect_producer(p) for p in procs]
    for n in range(2):
        _drain(world, first, folder / f"spool-{n}")
    return _outcome(
        world, "two receivers, one file", "two serve processes on one SQLite file", db, producers, [first, second]
    )


def soak(world: World) -> Outcome:
    """Steady load for ``scale.soak_s``: the receiver's and the producer's memory over time."""
    folder = world.folder("soak")
    receiver = ReceiverProc(folder / "ledger.db").start()
    producer_memory = RssSampler(interval_s=1.0)
    proc = start_producer(
        world.module,
        {
            "FLOWLEDGER_ENDPOINT": receiver.url,
            "FLOWLEDGER_SPOOL_DIR": str(folder / "spool"),
            "FAULTS_RUNS": "0",
            "FAULTS_DURATION_S": str(world.scale.soak_s),
            "FAULTS_PACE_S": "0.01",
        },
    )
    producer_memory.watch(proc.pid)
    producer = collect_producer(proc, timeout_s=world.scale.soak_s + 120)
    producer_memory.stop()
    _drain(world, receiver, folder / "spool")
    series = list(receiver.memory.samples)
    out = _outcome(world, "soak", f"steady load for {world.scale.soak_s:.0f} s", receiver.db, [producer], [receiver])
    out.rss_series_mib = [(t, kib / 1024) for t, kib in series]
    for who, samples in (("receiver", series), ("producer", producer_memory.samples)):
        first, last = _quarter_medians([kib for _, kib in samples])
        out.facts[f"{who}_rss_first_quarter_mib"] = first / 1024
        out.facts[f"{who}_rss_last_quarter_mib"] = last / 1024
        out.notes.append(f"{who} RSS: first quarter median {first / 1024:.1f} MiB, last quarter {last / 1024:.1f} MiB")
    out.notes.append("the receiver's SQLite page cache (64 MiB on the write connection) fills as the database grows")
    return out


def _quarter_medians(values: Sequence[int]) -> tuple[float, float]:
    if len(values) < 4:
        return float("nan"), float("nan")
    quarter = len(values) // 4
    return statistics.median(values[:quarter]), statistics.median(values[-quarter:])


SCENARIOS: Final[tuple[Callable[[World], Outcome], ...]] = (
    baseline,
    receiver_kill_loop,
    proxy_latency,
    proxy_resets,
    proxy_half_open,
    proxy_slow_reads,
    proxy_blackhole,
    answers(500),
    answers(429),
    answers(503),
    database_disk_full,
    spool_disk_full,
    producer_killed,
    clock_skew(300.0),
    clock_skew(-300.0),
    two_receivers,
    soak,
)
"""In order: the baseline first (the others' added time is measured against it), the soak last."""
