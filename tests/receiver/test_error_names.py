"""flowledger's own exception types are shown by their public names; the ledger keeps what was sent."""

from __future__ import annotations

import importlib
import json
import sqlite3

import httpx
import pytest
from click.testing import CliRunner

import flowledger._exceptions
from flowledger.receiver._error_names import PUBLIC_EXCEPTIONS, public_error_type
from flowledger.receiver.cli._commands import runs_command, show_command
from tests.receiver._support import LiveReceiver, typical_run

PRIVATE = "flowledger._exceptions.RunAborted"
PUBLIC = "flowledger.RunAborted"


def test_the_table_is_what_the_public_modules_export() -> None:
    """Every exception a public module exports is in the table, with that module, and nothing else is."""
    exported: dict[str, str] = {}
    for module_name in (
        "flowledger",
        "flowledger.workflow",
        "flowledger.codegen",
        "flowledger.adapters",
        "flowledger.workflow.executors",
    ):
        module = importlib.import_module(module_name)
        for name in flowledger._exceptions.__all__:
            if name in module.__all__:
                exported.setdefault(name, module_name)
    assert exported == PUBLIC_EXCEPTIONS


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        (PRIVATE, PUBLIC),
        ("flowledger._exceptions.HttpNodeError", "flowledger.workflow.HttpNodeError"),
        ("flowledger.instrument._run.NodeTimeout", "flowledger.NodeTimeout"),
        ("flowledger.RunAborted", "flowledger.RunAborted"),
        ("flowledger._exceptions.StoreError", "flowledger._exceptions.StoreError"),
        ("ValueError", "ValueError"),
        ("shop._errors.RunAborted", "shop._errors.RunAborted"),
    ],
)
def test_public_error_type(stored: str, shown: str) -> None:
    """Private paths to public flowledger exceptions become public; everything else is left as sent."""
    assert public_error_type(stored) == shown


def _aborted_run(live: LiveReceiver) -> str:
    run = typical_run()
    for event in run.events:
        error = event["data"].get("error")
        if error is not None:
            error["type"] = PRIVATE
    assert live.post(run.events).json()["rejected"] == []
    return run.run_id


def test_api_viewer_and_cli_show_the_public_name(live: LiveReceiver) -> None:
    """/api/runs, /api/runs/ID, the viewer's run and attempts, and the CLI's show and runs say flowledger.RunAborted."""
    run_id = _aborted_run(live)
    detail = live.get(f"/api/runs/{run_id}").json()
    assert detail["error"]["type"] == PUBLIC
    assert {n["error"]["type"] for n in detail["nodes"] if n["error"]} == {PUBLIC}
    assert live.get("/api/runs").json()["runs"][0]["error"]["type"] == PUBLIC
    viewer_run = httpx.get(f"{live.url}/api/viewer/runs/{run_id}", timeout=30).json()
    attempts = httpx.get(f"{live.url}/api/viewer/runs/{run_id}/attempts", timeout=30).json()
    shown = json.dumps([viewer_run, attempts])
    assert PUBLIC in shown
    assert "_exceptions" not in shown
    for where in (["--db", str(live.db_path)], ["--url", live.url]):
        for command, args in ((show_command, [run_id]), (runs_command, [])):
            for as_json in ([], ["--json"]):
                result = CliRunner().invoke(command, [*args, *as_json, *where], env={"COLUMNS": "250"})
                assert result.exit_code == 0, result.output
                assert PUBLIC in result.output
                assert "_exceptions" not in result.output
    conn = sqlite3.connect(live.db_path)
    bodies = [
        row[0]
        for row in conn.execute(
            "SELECT p.body FROM ledger l JOIN payloads p ON p.seq = l.seq WHERE l.kind = 'run_finished'"
        )
    ]
    conn.close()
    assert PRIVATE in bodies[0]  # the ledger keeps what the producer sent
