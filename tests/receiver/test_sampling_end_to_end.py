"""Sampling from a real program through a real receiver: every failed run kept, the dropped ones counted."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx

from tests.receiver._support import LiveReceiver

ROOT = Path(__file__).resolve().parents[2]

PROGRAM = textwrap.dedent(
    """
    import flowledger

    @flowledger.node
    def charge(order):
        if order % 5 == 0:
            raise ValueError(f"card declined for order {order}")
        return order

    for order in range(1, 31):
        try:
            with flowledger.run("orders", data={"order": order}):
                charge(order)
        except ValueError:
            pass
    with flowledger.run("billing"):
        charge(1)
    print("flushed" if flowledger.flush(timeout_s=10.0) else "not flushed")
    """
)


def test_sampling_keeps_every_failed_run_and_counts_the_dropped(live: LiveReceiver, tmp_path: Path) -> None:
    """At FLOWLEDGER_SAMPLE_RATE=orders=0 the 6 failed orders are stored whole, the 24 others counted only."""
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWLEDGER_", "OTEL_"))}
    env |= {
        "FLOWLEDGER_ENDPOINT": live.url,
        "FLOWLEDGER_SPOOL_DIR": str(tmp_path / "spool"),
        "FLOWLEDGER_SAMPLE_RATE": "orders=0",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]),
    }
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "flushed"

    orders = live.get("/api/runs", params={"workflow_id": "orders", "limit": 100}).json()
    assert orders["total"] == 6
    assert {run["status"] for run in orders["runs"]} == {"failed"}
    for run in orders["runs"]:
        detail = live.get(f"/api/runs/{run['run_id']}").json()
        assert [(n["node_id"], n["status"]) for n in detail["nodes"]] == [("charge", "failed")]
        assert "card declined" in detail["nodes"][0]["error"]["message"]
    assert live.get("/api/runs", params={"workflow_id": "billing"}).json()["total"] == 1

    expected = {"workflows": [{"workflow_id": "orders", "runs_sampled_out": 24}]}
    assert live.get("/api/sampling").json() == expected
    assert 'flowledger_runs_sampled_out_total{workflow_id="orders"} 24' in live.get("/metrics").text
    assert live.get("/api/sampling", params={"x": "1"}).status_code == 400
    # The counts are folded from the ledger like everything else: a rebuild gives them back, verify passes.
    assert httpx.post(f"{live.url}/api/rebuild", timeout=60).json()["runs_missing"] == []
    assert live.get("/api/sampling").json() == expected
    assert live.get("/api/verify").json()["ok"] is True


CAPTURED_THEN_SENT = textwrap.dedent(
    """
    import flowledger
    from flowledger.testing import capture_events

    with capture_events() as kept:  # a user's own test of their code: kept in memory, not sent
        with flowledger.run("checked"):
            pass
    with flowledger.run("billing"):
        pass
    print(len(kept.all), "flushed" if flowledger.flush(timeout_s=10.0) else "not flushed")
    """
)


def test_events_a_test_capture_keeps_leave_no_gap_in_what_is_sent(live: LiveReceiver, tmp_path: Path) -> None:
    """Events `capture_events()` keeps from delivery are numbered apart: the run sent after them shows no event lost
    (their numbers made a gap that `coverage` failed and /metrics counted as lost in transit)."""
    script = tmp_path / "program.py"
    script.write_text(CAPTURED_THEN_SENT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWLEDGER_", "OTEL_"))}
    env |= {
        "FLOWLEDGER_ENDPOINT": live.url,
        "FLOWLEDGER_SPOOL_DIR": str(tmp_path / "spool"),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]),
    }
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "flushed"]
    assert live.get("/api/runs").json()["total"] == 1
    assert live.get("/api/coverage").json()["status"] == "PASS"
    assert "flowledger_events_lost 0" in live.get("/metrics").text
