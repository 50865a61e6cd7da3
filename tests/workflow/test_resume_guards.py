"""What a resume refuses or runs again, from a generated module against a real receiver and its SQLite ledger:
a run still running, a succeeded run with nothing to do, new trigger data, a dry run's simulated effect, and a
projection that points a node at another node's output."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest

from tests._five_steps import Workflow
from tests.receiver._support import RunEvents

ORDER = {"id": "A-1", "qty": 3}


def _nodes(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["node_id"]: n for n in run["nodes"]}


@pytest.mark.slow
def test_a_run_still_running_is_not_resumed(wf: Workflow) -> None:
    """A run the receiver shows running (started, fetch done, no end yet) is refused naming its status; nothing
    runs, so its nodes and effects are not done a second time beside its own process."""
    running = RunEvents(workflow_id="five-steps").start(trigger_data=ORDER).node("fetch")
    assert wf.live.post(running.events).json()["rejected"] == []
    assert wf.live.get(f"/api/runs/{running.run_id}").json()["status"] == "running"
    done = wf.run("--resume", running.run_id, "--input", json.dumps(ORDER))
    assert done.returncode == 1, done.stderr
    assert done.stderr == (
        f"error: cannot resume run {running.run_id}: it is still running (status running), and a resume now would "
        "run its nodes and effects a second time; wait until it ends, or until the receiver marks it stuck\n"
    )
    assert wf.calls() == []


@pytest.mark.slow
def test_a_succeeded_run_is_resumed_only_when_something_runs_again(wf: Workflow) -> None:
    """A succeeded run resumed as it is would run nothing: refused, saying to use --from; with --from it reruns."""
    first = wf.run("--input", json.dumps(ORDER))
    assert first.returncode == 0, first.stderr
    run_id = str(wf.latest_run()["run_id"])
    pointless = wf.run("--resume", run_id)
    assert pointless.returncode == 1
    assert "it succeeded, and a resume would reuse every node's output and run nothing" in pointless.stderr
    assert "--from NODE" in pointless.stderr
    assert wf.calls() == []
    again = wf.run("--resume", run_id, "--from", "pack")
    assert again.returncode == 0, again.stderr
    assert wf.calls() == ["pack", "ship"]


@pytest.mark.slow
def test_new_trigger_data_runs_the_nodes_that_read_it_again(wf: Workflow) -> None:
    """--input with other trigger data: fetch (the root) and everything below it run again on it, so the record
    agrees with itself; the same trigger data reuses fetch and charge as before."""
    failed = wf.failed_run()
    changed = wf.run("--resume", failed, "--input", json.dumps({"id": "B-2", "qty": 5}))
    assert changed.returncode == 0, changed.stderr
    assert "run   fetch: the trigger data differs from the run's" in changed.stderr
    assert wf.calls() == ["fetch", "charge", "price", "pack", "ship"]  # charge's input changed: a new key, done
    nodes = _nodes(wf.latest_run())
    assert nodes["fetch"]["input"] == {"id": "B-2", "qty": 5}
    assert nodes["fetch"]["output"] == {"order": "B-2", "lines": [{"sku": "apple", "qty": 5}]}
    assert nodes["charge"]["duplicate"] is None

    same = wf.run("--resume", failed, "--input", json.dumps(ORDER))
    assert same.returncode == 0, same.stderr
    assert "reuse fetch" in same.stderr
    assert wf.calls() == ["price", "pack", "ship"]


@pytest.mark.slow
def test_a_live_resume_of_a_dry_run_does_the_simulated_effect(wf: Workflow) -> None:
    """A dry run simulated charge: a live resume reuses fetch (really computed), does charge for real and runs
    everything below it, which was computed from the simulated effect's empty output."""
    dry = wf.run("--input", json.dumps(ORDER), "--dry-run")
    assert dry.returncode == 1, dry.stderr  # price reads the simulated charge's output: None
    run_id = str(wf.latest_run()["run_id"])
    assert _nodes(wf.latest_run())["charge"]["simulated"] is True
    done = wf.run("--resume", run_id)
    assert done.returncode == 0, done.stderr
    assert "reuse fetch" in done.stderr
    assert "run   charge: it was only simulated (a dry run's effect)" in done.stderr
    assert wf.calls() == ["charge", "price", "pack", "ship"]
    charge = _nodes(wf.latest_run())["charge"]
    assert (charge["simulated"], charge["duplicate"]) == (None, None)


@pytest.mark.slow
def test_a_node_pointed_at_another_nodes_output_refuses_the_resume(wf: Workflow) -> None:
    """node_runs edited so that charge's output row is fetch's node_finished: the resume refuses naming charge and
    what the row really is; nothing runs (reusing fetch's output as charge's would have succeeded, wrongly)."""
    failed = wf.failed_run()
    db = sqlite3.connect(wf.live.db_path)
    try:
        with db:
            (seq,) = db.execute(
                "SELECT output_seq FROM node_runs WHERE run_id = ? AND node_id = 'fetch'", (failed,)
            ).fetchone()
            db.execute("UPDATE node_runs SET output_seq = ? WHERE run_id = ? AND node_id = 'charge'", (seq, failed))
    finally:
        db.close()
    done = wf.run("--resume", failed)
    assert done.returncode == 1
    assert done.stderr == (
        f"error: cannot resume run {failed}: node `charge`: ledger entry {seq} is the node_finished of node `fetch`, "
        "not of this node (the run's records in the database were changed)\n"
    )
    assert wf.calls() == []
