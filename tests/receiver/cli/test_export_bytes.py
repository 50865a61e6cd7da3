"""flowledger export writes what GET /api/export answers, byte for byte, from --url and --db alike."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.receiver._support import LiveReceiver, simple_run

LINE_BREAKERS = "a\u2028b\u2029c\x85d\x1ce\x1df\x1eg\x0bh\x0ci\rCR\r\nCRLF\nLF end"
"""Characters str.splitlines takes for line ends (JSON and CSV do not), in a workflow name."""


def _export(fmt: str, where: list[str]) -> bytes:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWLEDGER_")}
    done = subprocess.run(
        [sys.executable, "-m", "flowledger", "export", "--format", fmt, *where],
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_over_url_is_the_api_body_and_the_db_export(live: LiveReceiver, fmt: str) -> None:
    """A run whose name holds U+2028, U+2029, NEL, FS, VT, FF, CR: --url, --db and the API give the same bytes."""
    runs = [simple_run(), simple_run(), simple_run()]
    runs[1].events[0]["data"]["workflow_name"] = LINE_BREAKERS
    assert live.post([e for run in runs for e in run.events]).status_code == 200
    body = live.get("/api/export", params={"format": fmt}).content
    over_url = _export(fmt, ["--url", live.url])
    from_db = _export(fmt, ["--db", str(live.db_path)])
    assert over_url == body
    assert from_db == body
    if fmt == "csv":
        assert body.count(b"\r\n") >= len(runs) + 1  # the header and a row per run end in CRLF
        assert b"\rCR" in body
