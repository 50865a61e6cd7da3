"""The receiver's CLI commands on --db and --url: tables, --json, export, rebuild, clean errors."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from flowledger.receiver.cli._commands import COMMANDS, export_command, rebuild_command, runs_command, show_command
from flowledger.receiver.store import _sqlite
from tests.receiver._support import LiveReceiver, RunEvents, simple_run, typical_run


@pytest.fixture
def filled(live: LiveReceiver) -> tuple[LiveReceiver, list[RunEvents]]:
    """A receiver with five runs, one failed."""
    runs = [typical_run(), *(simple_run() for _ in range(4))]
    live.post([e for run in runs for e in run.events])
    return live, runs


def _where(live: LiveReceiver, how: str) -> list[str]:
    return ["--db", str(live.db_path)] if how == "db" else ["--url", live.url]


def test_commands_are_the_contract_names() -> None:
    """COMMANDS holds serve, runs, show, export, verify, rebuild and import."""
    assert [c.name for c in COMMANDS] == ["serve", "runs", "show", "export", "verify", "rebuild", "import"]


def test_importing_the_cli_module_is_cheap() -> None:
    """Importing the commands does not import the server, the database driver or rich."""
    code = (
        "import sys, flowledger.receiver.cli._commands; "
        "print(sorted(m for m in ('starlette', 'uvicorn', 'aiosqlite', 'rich') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("how", ["db", "url"])
def test_runs_json_lists_newest_first(filled: tuple[LiveReceiver, list[RunEvents]], how: str) -> None:
    """runs --json prints the same listing from the file and from the receiver."""
    live, runs = filled
    result = CliRunner().invoke(runs_command, ["--json", *_where(live, how)])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["total"] == len(runs)
    starts = [r["started_at"] for r in body["runs"]]
    assert starts == sorted(starts, reverse=True)


@pytest.mark.parametrize("how", ["db", "url"])
def test_runs_table_and_filters(filled: tuple[LiveReceiver, list[RunEvents]], how: str) -> None:
    """runs prints a table; --status narrows it."""
    live, _runs = filled
    result = CliRunner().invoke(runs_command, ["--status", "failed", *_where(live, how)])
    assert result.exit_code == 0, result.output
    assert "1 of 1 runs" in result.output
    assert "failed" in result.output


@pytest.mark.parametrize("how", ["db", "url"])
def test_show_prints_the_run_and_its_nodes(filled: tuple[LiveReceiver, list[RunEvents]], how: str) -> None:
    """show RUN_ID prints the run's status, error and every node attempt; --json the API shape."""
    live, runs = filled
    run_id = runs[0].run_id
    table = CliRunner().invoke(show_command, [run_id, *_where(live, how)])
    assert table.exit_code == 0, table.output
    assert "failed" in table.output
    assert "notify" in table.output
    as_json = CliRunner().invoke(show_command, [run_id, "--json", *_where(live, how)])
    assert len(json.loads(as_json.output)["nodes"]) == 6


@pytest.mark.parametrize("how", ["db", "url"])
def test_show_unknown_run_is_one_error_line(filled: tuple[LiveReceiver, list[RunEvents]], how: str) -> None:
    """show of an unknown id exits 1 with one line on stderr."""
    live, _ = filled
    result = CliRunner().invoke(show_command, ["no-such-run", *_where(live, how)])
    assert result.exit_code == 1
    assert result.output.strip() == "error: there is no run 'no-such-run'"


@pytest.mark.parametrize("how", ["db", "url"])
def test_export_csv_and_jsonl_to_a_file(filled: tuple[LiveReceiver, list[RunEvents]], how: str, tmp_path: Path) -> None:
    """export writes CSV rows or JSONL runs with nodes to -o FILE."""
    live, runs = filled
    out = tmp_path / "runs.csv"
    assert CliRunner().invoke(export_command, ["--format", "csv", "-o", str(out), *_where(live, how)]).exit_code == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert sorted(r["run_id"] for r in rows) == sorted(r.run_id for r in runs)
    result = CliRunner().invoke(export_command, ["--format", "jsonl", *_where(live, how)])
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert len(lines) == len(runs)
    assert sum(len(run["nodes"]) for run in lines) == 6 + 4


def test_export_streams_in_chunks_without_losing_rows(
    filled: tuple[LiveReceiver, list[RunEvents]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keyset paging over small chunks still yields every run once, newest first."""
    live, runs = filled
    monkeypatch.setattr(_sqlite, "_STREAM_CHUNK", 2)
    result = CliRunner().invoke(export_command, ["--format", "jsonl", "--db", str(live.db_path)])
    ids = [json.loads(line)["run_id"] for line in result.output.splitlines()]
    assert sorted(ids) == sorted(r.run_id for r in runs)
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("how", ["db", "url"])
def test_rebuild_reports_no_drift_on_a_clean_store(filled: tuple[LiveReceiver, list[RunEvents]], how: str) -> None:
    """rebuild refolds every event and finds the projections matched."""
    live, _ = filled
    result = CliRunner().invoke(rebuild_command, ["--json", *_where(live, how)])
    assert result.exit_code == 0, result.output
    drift = json.loads(result.output)
    assert drift["clean"] is True
    assert drift["events"] == 15 + 4 * 4


def test_rebuild_finds_and_repairs_drift(filled: tuple[LiveReceiver, list[RunEvents]]) -> None:
    """A projection row changed or deleted by hand is reported as drift and refolded from the ledger."""
    live, runs = filled
    with sqlite3.connect(live.db_path) as conn:
        conn.execute("UPDATE runs SET status = 'succeeded' WHERE run_id = ?", (runs[0].run_id,))
        conn.execute("DELETE FROM runs WHERE run_id = ?", (runs[1].run_id,))
        conn.execute("DELETE FROM node_runs WHERE run_id = ?", (runs[2].run_id,))
    result = CliRunner().invoke(rebuild_command, ["--db", str(live.db_path)])
    assert result.exit_code == 0, result.output
    assert "1 runs changed" in result.output
    assert runs[1].run_id in result.output
    assert "node attempts missing" in result.output
    assert live.get(f"/api/runs/{runs[0].run_id}").json()["status"] == "failed"
    again = CliRunner().invoke(rebuild_command, ["--json", "--url", live.url])
    assert json.loads(again.output)["clean"] is True


def test_unreachable_url_is_one_error_line() -> None:
    """A receiver that is not there is reported in one line, exit 1."""
    result = CliRunner().invoke(runs_command, ["--url", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert result.output.startswith("error: cannot reach the receiver")
    assert len(result.output.strip().splitlines()) == 1


def test_db_and_url_together_is_a_usage_error(tmp_path: Path) -> None:
    """--db and --url at once is refused."""
    result = CliRunner().invoke(runs_command, ["--db", str(tmp_path / "x.db"), "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 2


def test_url_defaults_to_flowledger_endpoint(
    filled: tuple[LiveReceiver, list[RunEvents]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without --db or --url the commands read $FLOWLEDGER_ENDPOINT."""
    live, runs = filled
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FLOWLEDGER_ENDPOINT", live.url)
    result = CliRunner().invoke(runs_command, ["--json"])
    assert json.loads(result.output)["total"] == len(runs)


def test_not_a_database_is_one_error_line(tmp_path: Path) -> None:
    """A --db file that is not SQLite is a clear error, not a traceback."""
    bogus = tmp_path / "bogus.db"
    bogus.write_bytes(b"this is not sqlite" * 100)
    result = CliRunner().invoke(runs_command, ["--db", str(bogus)])
    assert result.exit_code == 1
    assert "not a flowledger database" in result.output


def test_serve_with_an_unusable_database_is_one_error_line(tmp_path: Path) -> None:
    """serve refuses a --db it cannot open, or that is not flowledger's, before starting the server."""
    from flowledger.receiver.cli._commands import serve_command

    missing_dir = CliRunner().invoke(serve_command, ["--db", str(tmp_path / "no" / "such" / "x.db"), "--port", "0"])
    assert missing_dir.exit_code == 1
    assert missing_dir.output.startswith("error: cannot open the database")
    bogus = tmp_path / "bogus.db"
    bogus.write_bytes(b"not a database" * 200)
    result = CliRunner().invoke(serve_command, ["--db", str(bogus), "--port", "0"])
    assert result.exit_code == 1
    assert "not a flowledger database" in result.output
