"""``flowledger diff`` and ``GET /api/diff`` on runs of two workflows, and on runs without a definition hash."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from flowledger.receiver._config import ReceiverConfig
from flowledger.receiver.cli._diff_command import diff_command
from tests.receiver._support import LiveReceiver, RunEvents, start_receiver


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveReceiver]:
    """A real receiver with a real SQLite ledger on 127.0.0.1."""
    receiver = start_receiver(ReceiverConfig(db_path=tmp_path / "ledger.db"))
    yield receiver
    receiver.stop()


def _post(live: LiveReceiver, *runs: RunEvents) -> None:
    events = [event for run in runs for event in run.events]
    assert live.post(events).json()["accepted"] == len(events)


def test_runs_of_two_workflows_are_said_to_be_of_different_workflows(live: LiveReceiver) -> None:
    """Same node ids, two workflows: the API says so and the text names both, never "definition same"."""
    orders = RunEvents(workflow_id="orders").start().node("fetch").finish()
    refunds = RunEvents(workflow_id="refunds").start().node("fetch").finish()
    _post(live, orders, refunds)
    answer = live.get("/api/diff", params={"a": orders.run_id, "b": refunds.run_id}).json()
    assert (answer["same_workflow"], answer["same_definition"]) == (False, False)
    result = CliRunner().invoke(diff_command, [orders.run_id, refunds.run_id, "--db", str(live.db_path)])
    assert result.exit_code == 0, result.output
    assert "runs of different workflows: orders (A) and refunds (B)" in result.output
    assert "definition changed" in result.output


def test_runs_without_a_definition_hash_have_an_unknown_definition(live: LiveReceiver) -> None:
    """Two SDK runs of one workflow, neither carrying a definition hash: "definition unknown", not "same"."""
    a = RunEvents(workflow_id="orders").start().node("fetch").finish()
    b = RunEvents(workflow_id="orders").start().node("fetch").finish()
    _post(live, a, b)
    result = CliRunner().invoke(diff_command, [a.run_id, b.run_id, "--url", live.url, "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert (answer["same_workflow"], answer["same_definition"]) == (True, None)
    text = CliRunner().invoke(diff_command, [a.run_id, b.run_id, "--url", live.url]).output
    assert "definition unknown" in text
    assert "different workflows" not in text
