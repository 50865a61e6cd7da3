"""The processes of a fault scenario: receivers, producers, memory samplers, and what the ledger holds."""

from __future__ import annotations

import gzip
import json
import os
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx

__all__ = [
    "ROOT",
    "Ledger",
    "ProducerResult",
    "ReceiverProc",
    "RssSampler",
    "collect_producer",
    "free_port",
    "generate_workflow",
    "read_ledger",
    "run_producer",
    "spooled_event_ids",
    "start_producer",
    "verify",
]

ROOT: Final = Path(__file__).resolve().parents[2]
_CLI: Final = [sys.executable, "-c", "from flowledger.cli import main; main()"]
START_TIMEOUT_S: Final = 20.0
PRODUCER_TIMEOUT_S: Final = 300.0


def env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment, with the project importable and ``extra`` on top."""
    out = dict(os.environ)
    paths = [str(ROOT / "src"), str(ROOT), out.get("PYTHONPATH", "")]
    out["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    out.update(extra or {})
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def generate_workflow(out_dir: Path) -> Path:
    """Generate the fault workflow's module (``workflow.yaml``) into ``out_dir``; return its path."""
    target = out_dir / "faults_workflow.py"
    subprocess.run(
        [*_CLI, "generate", str(Path(__file__).with_name("workflow.yaml")), "-o", str(target)],
        check=True,
        env=env(),
        capture_output=True,
    )
    return target


def _limit_file_size(max_bytes: int) -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))


def rss_kib(pid: int) -> tuple[int, int]:
    """(current, peak) resident set size of a live process, in KiB; (0, 0) once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0, 0
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return int(fields.get("VmRSS", "0 kB").split()[0]), int(fields.get("VmHWM", "0 kB").split()[0])


class RssSampler:
    """Samples a process's resident memory every ``interval_s`` in a thread: the series and the peak."""

    def __init__(self, interval_s: float = 0.5) -> None:
        self.interval_s = interval_s
        self.samples: list[tuple[float, int]] = []
        self.peak_kib = 0
        self._pids: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._start = time.monotonic()
        self._thread.start()

    def watch(self, pid: int) -> None:
        self._pids = [pid]

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            for pid in self._pids:
                current, peak = rss_kib(pid)
                if current:
                    self.samples.append((time.monotonic() - self._start, current))
                    self.peak_kib = max(self.peak_kib, peak)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@dataclass
class ReceiverProc:
    """A ``flowledger serve`` process on ``db`` and ``port``, started, killed and restarted at will."""

    db: Path
    port: int = field(default_factory=free_port)
    settings: dict[str, str] = field(default_factory=dict)
    """``FLOWLEDGER_RECEIVER_*`` variables."""
    file_size_limit: int | None = None
    """RLIMIT_FSIZE of the process (a full disk), or None."""
    proc: subprocess.Popen[bytes] | None = None
    memory: RssSampler = field(default_factory=RssSampler)
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait: bool = True) -> ReceiverProc:
        self.log = self.db.with_suffix(f".{self.port}.log")
        limit = self.file_size_limit
        with self.log.open("ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [*_CLI, "serve", "--db", str(self.db), "--port", str(self.port), "--log-level", "warning"],
                env=env(self.settings),
                stdout=subprocess.DEVNULL,
                stderr=log,
                preexec_fn=(lambda: _limit_file_size(limit)) if limit is not None else None,
            )
        self.memory.watch(self.proc.pid)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"the receiver exited ({self.proc.returncode}): {self.stderr()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("the receiver did not answer in time")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM, then wait for a clean exit."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.memory.stop()

    def metrics(self) -> dict[str, float]:
        """The receiver's ``/metrics`` samples without labels, by name."""
        out: dict[str, float] = {}
        for line in httpx.get(f"{self.url}/metrics", timeout=5).text.splitlines():
            if line and not line.startswith("#") and "{" not in line:
                name, _, value = line.partition(" ")
                out[name] = float(value)
        return out

    def stderr(self) -> str:
        return self.log.read_text(errors="replace") if self.log and self.log.exists() else ""


@dataclass
class ProducerResult:
    """What a producer process reported, and how its exit went."""

    returncode: int
    run_ids: list[str]
    run_s: list[float]
    stats: dict[str, int]
    final_stats: dict[str, int]
    exit_hold_s: float
    peak_rss_kib: int
    stderr: str

    @property
    def emitted(self) -> int:
        return int(self.final_stats.get("emitted", self.stats.get("emitted", 0)))

    @property
    def dropped(self) -> int:
        return int(self.final_stats.get("dropped", 0))


def run_producer(
    module: Path,
    endpoint: str,
    spool_dir: Path,
    *,
    runs: int,
    settings: Mapping[str, str] | None = None,
    file_size_limit: int | None = None,
    timeout_s: float = PRODUCER_TIMEOUT_S,
) -> ProducerResult:
    """Run the fault workflow ``runs`` times in a new process that records to ``endpoint``."""
    extra = {
        "FLOWLEDGER_ENDPOINT": endpoint,
        "FLOWLEDGER_SPOOL_DIR": str(spool_dir),
        "FAULTS_RUNS": str(runs),
        **(settings or {}),
    }
    proc = start_producer(module, extra, file_size_limit=file_size_limit)
    return collect_producer(proc, timeout_s=timeout_s)


def collect_producer(proc: subprocess.Popen[str], *, timeout_s: float = PRODUCER_TIMEOUT_S) -> ProducerResult:
    """Wait for a producer started by :func:`start_producer` and read its summary."""
    out, err = proc.communicate(timeout=timeout_s)
    ended = time.monotonic()
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    runs = [line for line in lines if "runs" in line]
    summary: dict[str, Any] = next((line for line in lines if "done_at" in line), {})
    final: dict[str, Any] = next((line for line in lines if "final_stats" in line), {})
    return ProducerResult(
        returncode=proc.returncode,
        run_ids=[run_id for line in runs for run_id in line["runs"]],
        run_s=[line["s"] for line in runs],
        stats=summary.get("stats", {}),
        final_stats=final.get("final_stats", {}),
        exit_hold_s=ended - summary["done_at"] if summary else float("nan"),
        peak_rss_kib=int(summary.get("peak_rss_kib", 0)),
        stderr=err,
    )


def start_producer(
    module: Path, extra: Mapping[str, str], *, file_size_limit: int | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.faults._producer", str(module)],
        cwd=ROOT,
        env=env(extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=(lambda: _limit_file_size(file_size_limit)) if file_size_limit is not None else None,
    )


@dataclass
class Ledger:
    """What the database holds for a set of runs."""

    events: int
    distinct_events: int
    event_ids: set[str]
    runs_by_status: dict[str, int]
    attempts: int

    @property
    def duplicated(self) -> int:
        return self.events - self.distinct_events


def read_ledger(db: Path, run_ids: Sequence[str]) -> Ledger:
    """Events, runs by status and node attempts stored for ``run_ids``."""
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TEMP TABLE wanted (run_id TEXT PRIMARY KEY)")
        conn.executemany("INSERT OR IGNORE INTO wanted VALUES (?)", [(r,) for r in run_ids])
        events, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT event_id) FROM ledger WHERE run_id IN (SELECT run_id FROM wanted)"
        ).fetchone()
        statuses = dict(
            conn.execute(
                "SELECT status, count(*) FROM runs WHERE run_id IN (SELECT run_id FROM wanted) GROUP BY status"
            ).fetchall()
        )
        ids = {r[0] for r in conn.execute("SELECT event_id FROM ledger WHERE run_id IN (SELECT run_id FROM wanted)")}
        (attempts,) = conn.execute(
            "SELECT count(*) FROM node_runs WHERE run_id IN (SELECT run_id FROM wanted)"
        ).fetchone()
    return Ledger(int(events), int(distinct), ids, {str(k): int(v) for k, v in statuses.items()}, int(attempts))


def spooled_event_ids(spool_dir: Path) -> set[str]:
    """Ids of the events waiting in a spool folder: ready and claimed batches (tmp files are half-written)."""
    ids: set[str] = set()
    for path in spool_dir.glob("*.json.gz*") if spool_dir.is_dir() else ():
        try:
            ids |= {event["event_id"] for event in json.loads(gzip.decompress(path.read_bytes()))["events"]}
        except (OSError, ValueError, KeyError):
            continue  # a torn file: the SDK moves it to corrupt/ when it meets it
    return ids


def verify(db: Path) -> bool:
    """``flowledger verify`` on ``db``: whether the chain is intact."""
    done = subprocess.run([*_CLI, "verify", "--db", str(db)], env=env(), capture_output=True, text=True)
    return done.returncode == 0
