"""flowledger import: a line JSON cannot carry (a non-finite number, nesting too deep) is refused alone, by number."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.receiver._support import LiveReceiver, simple_run

_DEEP = 2000
"""Nesting past what the json module (and the receiver's decoders) read."""


def _where(how: str, live: LiveReceiver, tmp_path: Path) -> list[str]:
    return ["--db", str(tmp_path / "imported.db")] if how == "db" else ["--url", live.url]


def _import(path: Path, where: list[str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWLEDGER_")}
    command = [sys.executable, "-m", "flowledger", "import", str(path), *where, "--json"]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=False)


def _file_with(tmp_path: Path, bad: str) -> tuple[Path, int]:
    """A run's events with ``bad`` as the second line; the number of good lines."""
    events = simple_run().events
    lines = [json.dumps(events[0]), bad, *(json.dumps(e) for e in events[1:])]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, len(events)


@pytest.mark.parametrize("how", ["db", "url"])
@pytest.mark.parametrize("number", ["1e400", "NaN", "-Infinity"])
def test_a_non_finite_number_refuses_its_line_only(tmp_path: Path, live: LiveReceiver, how: str, number: str) -> None:
    """A line holding 1e400 or NaN is rejected by its number; the other lines of its chunk are stored."""
    event = dict(simple_run().events[0])
    bad = json.dumps(event)[:-1] + f', "x": {number}}}'
    path, good = _file_with(tmp_path, bad)
    done = _import(path, _where(how, live, tmp_path))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    report = json.loads(done.stdout)
    assert report["accepted"] == good
    assert [item["line"] for item in report["rejected"]] == [2]
    assert "not a finite number" in report["rejected"][0]["error"]


@pytest.mark.parametrize("how", ["db", "url"])
def test_a_line_nested_too_deeply_refuses_its_line_only(tmp_path: Path, live: LiveReceiver, how: str) -> None:
    """A line of 2000 nested objects is rejected by its number (no traceback); the lines around it are stored."""
    path, good = _file_with(tmp_path, '{"a":' * _DEEP + "1" + "}" * _DEEP)
    done = _import(path, _where(how, live, tmp_path))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    report = json.loads(done.stdout)
    assert report["accepted"] == good
    assert [item["line"] for item in report["rejected"]] == [2]
    assert "nested too deeply" in report["rejected"][0]["error"]


@pytest.mark.parametrize("how", ["db", "url"])
def test_an_integer_of_too_many_digits_refuses_its_line_only(tmp_path: Path, live: LiveReceiver, how: str) -> None:
    """An integer past Python's digit limit is its line's rejection, not a traceback nor a refused batch."""
    event = dict(simple_run().events[0])
    path, good = _file_with(tmp_path, json.dumps(event)[:-1] + ', "x": ' + "9" * 5000 + "}")
    done = _import(path, _where(how, live, tmp_path))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    report = json.loads(done.stdout)
    assert report["accepted"] == good
    assert [item["line"] for item in report["rejected"]] == [2]
