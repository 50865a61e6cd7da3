"""flowledger import FILE: a JSONL file of the SDK's jsonl sink, loaded into a database or a receiver exactly once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from flowledger.instrument.delivery._jsonl import JsonlSender
from flowledger.receiver.cli._commands import import_command, runs_command
from tests.instrument.delivery._sender_support import make_settings
from tests.receiver._support import LiveReceiver, simple_run, typical_run


def _write(path: Path, events: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))


def _where(how: str, live: LiveReceiver, tmp_path: Path) -> list[str]:
    return ["--db", str(tmp_path / "imported.db")] if how == "db" else ["--url", live.url]


@pytest.mark.parametrize("how", ["db", "url"])
def test_import_is_exactly_once(tmp_path: Path, live: LiveReceiver, how: str) -> None:
    """The first import accepts every event; a second one finds only duplicates; the runs are there once."""
    runs = [typical_run(), simple_run()]
    events = [e for run in runs for e in run.events]
    path = tmp_path / "events.jsonl"
    _write(path, events)
    where = _where(how, live, tmp_path)
    first = CliRunner().invoke(import_command, [str(path), *where, "--json"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.output) == {"accepted": len(events), "duplicates": 0, "rejected": []}
    again = CliRunner().invoke(import_command, [str(path), *where])
    assert again.exit_code == 0, again.output
    assert f"0 accepted, {len(events)} duplicates, 0 rejected" in again.output
    listed = CliRunner().invoke(runs_command, [*where, "--json"])
    assert json.loads(listed.output)["total"] == 2


@pytest.mark.parametrize("how", ["db", "url"])
def test_bad_lines_are_reported_by_line_and_the_rest_stored(tmp_path: Path, live: LiveReceiver, how: str) -> None:
    """A torn line and an invalid event are rejected with their line numbers; exit 1; valid events are stored."""
    run = simple_run()
    invalid = dict(run.events[0], event_id="not-an-id", kind="nonsense")
    path = tmp_path / "events.jsonl"
    path.write_text(
        json.dumps(run.events[0])
        + "\n"
        + json.dumps(invalid)
        + "\n\n"
        + "\n".join(json.dumps(e) for e in run.events[1:])
        + '\n{"event_id": "torn'
    )
    result = CliRunner().invoke(import_command, [str(path), *_where(how, live, tmp_path), "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["accepted"] == len(run.events)
    assert sorted(item["line"] for item in report["rejected"]) == [2, len(run.events) + 3]


def test_a_file_written_by_the_jsonl_sink_imports(tmp_path: Path, live: LiveReceiver) -> None:
    """The SDK's jsonl sink output (captured payloads spliced in as JSON) is what import reads."""
    run = typical_run()
    path = tmp_path / "events.jsonl"
    sink = JsonlSender(make_settings(tmp_path / "spool"), path)
    for event in run.events:
        sink.submit(dict(event), 500)
    assert sink.flush(5.0)
    sink.shutdown(0.5)
    result = CliRunner().invoke(import_command, [str(path), "--url", live.url])
    assert result.exit_code == 0, result.output
    assert f"{len(run.events)} accepted" in result.output
    stored = live.get(f"/api/runs/{run.run_id}").json()
    assert stored["status"] == "failed" or stored["status"] == "succeeded"


def test_an_unreachable_receiver_is_one_clear_error(tmp_path: Path) -> None:
    """--url of a port where nothing listens: exit 1 with one line saying the import can be run again."""
    path = tmp_path / "events.jsonl"
    _write(path, simple_run().events)
    result = CliRunner().invoke(import_command, [str(path), "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert "cannot reach the receiver" in result.output
    assert "Traceback" not in result.output
