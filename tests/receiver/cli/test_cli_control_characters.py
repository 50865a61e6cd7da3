"""Control characters in event data reach no terminal: the CLI's human output shows them as visible escapes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.receiver._support import LiveReceiver, RunEvents

HOSTILE = "<\x1bc\x1b[2J\x1b]52;c;aGk=\x07\x01\x00\x9b\x7f\rX\nY\x85>"
"""A terminal reset, a screen clear, an OSC 52 clipboard write, SOH, NUL, a C1 CSI, DEL, CR, LF and NEL."""

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""What must not reach a terminal: every C0 character but TAB and LF, DEL and every C1 character."""


def _flowledger(*args: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWLEDGER_")}
    env |= {"NO_COLOR": "1", "COLUMNS": "200", "TERM": "dumb"}  # rich writes no escape of its own
    command = [sys.executable, "-m", "flowledger", *args]
    return subprocess.run(command, capture_output=True, env=env, timeout=60, check=False)


def _hostile_runs() -> tuple[RunEvents, RunEvents, RunEvents]:
    """Two failed runs of one workflow, text fields hostile and outputs different; a run missing a node_finished."""
    pair = []
    for output in ("one" + HOSTILE, "two" + HOSTILE):
        run = RunEvents(workflow_id="wf" + HOSTILE).start(workflow_name="name" + HOSTILE)
        run.node("node" + HOSTILE, output={"text": output}).logs("node" + HOSTILE, ["log" + HOSTILE])
        run.node("price" + HOSTILE, status="failed").skipped("notify" + HOSTILE, reason="why" + HOSTILE)
        run.finish("failed", error_node="price" + HOSTILE)
        run.events[-1]["data"]["error"]["message"] = "message" + HOSTILE
        pair.append(run)
    torn = RunEvents(workflow_id="wf" + HOSTILE).start().node("lost" + HOSTILE).finish()
    torn.events = [e for e in torn.events if e["kind"] != "node_finished"]
    return pair[0], pair[1], torn


@pytest.fixture
def hostile(live: LiveReceiver) -> tuple[LiveReceiver, RunEvents, RunEvents]:
    """A receiver holding the hostile runs."""
    a, b, torn = _hostile_runs()
    answer = live.post([*a.events, *b.events, *torn.events]).json()
    assert answer["rejected"] == [], answer
    return live, a, b


def _where(live: LiveReceiver, how: str) -> list[str]:
    return ["--db", str(live.db_path)] if how == "db" else ["--url", live.url]


def _assert_printable(done: subprocess.CompletedProcess[bytes]) -> str:
    for stream in (done.stdout, done.stderr):
        found = _CONTROL.findall(stream.decode("utf-8"))
        assert not found, (found, stream[:2000])
    return done.stdout.decode("utf-8")


@pytest.mark.parametrize("how", ["db", "url"])
@pytest.mark.parametrize(
    "command",
    [["runs"], ["show", "A", "--logs"], ["diff", "A", "B"], ["errors"], ["stats"], ["stats", "--by", "node"]],
    ids=["runs", "show", "diff", "errors", "stats", "stats-by-node"],
)
def test_stored_control_characters_are_shown_escaped(
    hostile: tuple[LiveReceiver, RunEvents, RunEvents], how: str, command: list[str]
) -> None:
    """runs, show --logs, diff, errors and stats print ESC, BEL, NUL, C1 and CR as visible escapes, never raw."""
    live, a, b = hostile
    args = [{"A": a.run_id, "B": b.run_id}.get(arg, arg) for arg in command]
    done = _flowledger(*args, *_where(live, how))
    assert done.returncode in (0, 1), done.stderr
    out = _assert_printable(done)
    assert "\\x1b" in out


def test_coverage_samples_show_control_characters_escaped(hostile: tuple[LiveReceiver, RunEvents, RunEvents]) -> None:
    """coverage's samples name the hostile node id with its control characters escaped."""
    live, _, _ = hostile
    done = _flowledger("coverage", "--db", str(live.db_path))
    assert done.returncode == 1
    assert "\\x1b" in _assert_printable(done)


def test_show_escapes_a_newline_in_a_one_line_field_only_and_json_stays_exact(
    hostile: tuple[LiveReceiver, RunEvents, RunEvents],
) -> None:
    """show escapes LF in the run's name but not in a log message (which may span lines); --json stays exact."""
    live, a, _ = hostile
    out = _assert_printable(_flowledger("show", a.run_id, "--logs", "--url", live.url))
    assert "X\\nY" in out.splitlines()[0]
    assert any(line.startswith("Y") for line in out.splitlines())
    shown: dict[str, Any] = json.loads(_flowledger("show", a.run_id, "--json", "--url", live.url).stdout)
    stored = live.get(f"/api/runs/{a.run_id}").json()
    assert shown["workflow_name"] == stored["workflow_name"]
    assert shown["error"]["message"] == stored["error"]["message"] == "message" + HOSTILE


def test_an_import_rejection_quoting_a_value_is_shown_escaped(tmp_path: Path) -> None:
    """import's rejected lines quote what they refused: with control characters escaped, on stderr too."""
    event = RunEvents().start().events[0]
    event["project"] = "p" + HOSTILE
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(event, ensure_ascii=False) + "\n", encoding="utf-8")
    done = _flowledger("import", str(path), "--db", str(tmp_path / "imported.db"))
    assert done.returncode == 1
    _assert_printable(done)
    assert b"rejected line 1" in done.stderr
