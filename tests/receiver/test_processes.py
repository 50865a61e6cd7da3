"""Real processes: eight concurrent writers, and a receiver killed with SIGKILL mid-ingest."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.receiver._support import LiveReceiver

ROOT = Path(__file__).resolve().parents[2]
EVENTS_PER_RUN = 15
_CLI = [sys.executable, "-c", "from flowledger.cli import main; main()"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


def _client(url: str, runs: int, batch: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.receiver._client_proc", url, str(runs), str(batch)],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _summary(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    summary: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return summary


def _ledger(db: Path) -> tuple[int, int, set[str]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT count(*), count(DISTINCT event_id) FROM ledger").fetchone()
        runs = {r[0] for r in conn.execute("SELECT run_id FROM runs WHERE status = 'failed'")}
    return int(rows[0]), int(rows[1]), runs


def _verify(db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_CLI, "verify", "--db", str(db)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
def test_eight_concurrent_writer_processes(live: LiveReceiver) -> None:
    """Eight client processes posting at once: every event stored once, no lock errors, chain intact."""
    procs = [_client(live.url, runs=20, batch=25) for _ in range(8)]
    summaries = [_summary(p) for p in procs]
    total = sum(s["events"] for s in summaries)
    assert sum(s["accepted"] for s in summaries) == total
    count, distinct, failed_runs = _ledger(live.db_path)
    assert count == distinct == total == 8 * 20 * EVENTS_PER_RUN
    assert failed_runs == {rid for s in summaries for rid in s["run_ids"]}
    assert _verify(live.db_path).returncode == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(db: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from flowledger.cli import main; main()",
            "serve",
            "--db",
            str(db),
            "--port",
            str(port),
        ],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        assert proc.poll() is None, "the receiver exited"
        assert time.monotonic() < deadline, "the receiver did not start"
        time.sleep(0.05)


@pytest.mark.slow
def test_sigkill_mid_ingest_loses_and_doubles_nothing(tmp_path: Path) -> None:
    """Kill -9 the receiver while clients post; after a restart and client retries every event is stored once."""
    db = tmp_path / "crash.db"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    receiver = _serve(db, port)
    clients = [_client(url, runs=40, batch=10) for _ in range(3)]
    try:
        # Wait until the first client is a quarter through, then kill the receiver without warning:
        # the kill then lands mid-ingest however fast this machine is.
        assert clients[0].stdout is not None
        while json.loads(clients[0].stdout.readline())["progress"] < 40 * EVENTS_PER_RUN // 4:
            pass
        receiver.send_signal(signal.SIGKILL)
        receiver.wait(timeout=10)
        killed_at = _ledger(db)[0]
        time.sleep(0.5)  # clients now meet refused connections and keep retrying
        receiver = _serve(db, port)
        summaries = [_summary(c) for c in clients]
    finally:
        for c in clients:
            if c.poll() is None:
                c.kill()
        receiver.send_signal(signal.SIGTERM)
        receiver.wait(timeout=20)
    total = sum(s["events"] for s in summaries)
    assert 0 < killed_at < total, "the kill did not land mid-ingest"
    assert sum(s["retries"] for s in summaries) > 0
    count, distinct, failed_runs = _ledger(db)
    assert count == distinct == total
    assert failed_runs == {rid for s in summaries for rid in s["run_ids"]}
    verified = _verify(db)
    assert verified.returncode == 0, verified.stderr
