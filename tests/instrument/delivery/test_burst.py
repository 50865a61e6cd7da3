"""Real processes: a burst of quick nodes against a healthy `flowledger serve`, and an exit budget out of range."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._serve import serve_process
from tests.instrument.delivery._sender_support import REPO_ROOT, child_env, recorder

CHILD_TIMEOUT_S = 300.0
BURST_NODES = 20_000

_BURST = """
import json, sys, flowledger

@flowledger.node
def quick(i: int) -> int:
    return i + 1

with flowledger.run("burst") as run:
    for i in range(int(sys.argv[1])):
        quick(i)
ok = flowledger.flush(None)
print(json.dumps({"run_id": run.run_id, "flushed": ok, **flowledger.stats()}))
"""

_SHORT_RUN = """
import flowledger

@flowledger.node
def quick(i: int) -> int:
    return i + 1

with flowledger.run("short"):
    for i in range(5):
        quick(i)
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real receiver, `flowledger serve` on 127.0.0.1, and its database."""
    db = tmp_path / "ledger.db"
    with serve_process(["--db", str(db)], child_env()) as (url, _child):
        yield url, db


@pytest.mark.slow
def test_a_burst_of_quick_nodes_loses_nothing_with_a_healthy_receiver(served: tuple[str, Path], tmp_path: Path) -> None:
    """20,000 quick nodes in one run, default settings: the overflow spills to the spool and is sent from there."""
    url, db = served
    spool = tmp_path / "spool"
    env = child_env(FLOWLEDGER_ENDPOINT=url, FLOWLEDGER_SPOOL_DIR=str(spool))
    done = subprocess.run(
        [sys.executable, "-c", _BURST, str(BURST_NODES)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["dropped"] == 0, result
    assert result["spooled"] > 0, "the burst did not outrun the receiver: nothing was spilled"
    assert result["replayed"] == result["spooled"]
    assert result["flushed"]
    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT count(DISTINCT event_id) FROM ledger WHERE run_id = ?", (result["run_id"],))
        status = conn.execute("SELECT status FROM runs WHERE run_id = ?", (result["run_id"],)).fetchone()
        assert stored.fetchone()[0] == result["emitted"] == BURST_NODES + 2
    assert status == ("succeeded",)
    assert list(spool.glob("*.json.gz*")) == []


def test_an_exit_budget_out_of_range_is_reported_and_the_run_still_delivered(tmp_path: Path) -> None:
    """FLOWLEDGER_EXIT_FLUSH_S=1e10 warns, naming the variable, its range and the default, and the exit delivers."""
    with recorder() as rec:
        env = child_env(
            FLOWLEDGER_ENDPOINT=rec.url, FLOWLEDGER_SPOOL_DIR=str(tmp_path / "spool"), FLOWLEDGER_EXIT_FLUSH_S="1e10"
        )
        done = subprocess.run(
            [sys.executable, "-c", _SHORT_RUN],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S,
        )
        assert done.returncode == 0, done.stderr
        assert "FLOWLEDGER_EXIT_FLUSH_S='1e10'" in done.stderr
        assert "from 0 to 3600" in done.stderr
        assert "the default, 0.3 s" in done.stderr
        assert "internal error" not in done.stderr
        kinds = [e["kind"] for e in rec.events]
        assert kinds.count("run_finished") == 1
        assert kinds.count("node_finished") == 5
