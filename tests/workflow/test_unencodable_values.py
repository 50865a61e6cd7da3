"""Values JSON cannot hold never cost a generated workflow its records: a real receiver ends the run."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flowledger.codegen import generate
from tests.instrument.delivery._sender_support import REPO_ROOT, child_env
from tests.receiver._support import LiveReceiver

POLL_TIMEOUT_S = 15.0


def _finished_run(live: LiveReceiver, workflow_id: str) -> dict[str, Any]:
    """The workflow's one run once it is no longer running (fails after POLL_TIMEOUT_S)."""
    deadline = time.monotonic() + POLL_TIMEOUT_S
    runs: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        runs = live.get("/api/runs", params={"workflow_id": workflow_id}).json()["runs"]
        if runs and runs[0]["status"] != "running":
            answer: dict[str, Any] = live.get(f"/api/runs/{runs[0]['run_id']}").json()
            return answer
        time.sleep(0.05)
    raise AssertionError(f"the run of {workflow_id} never finished in the receiver: {runs!r}")


@pytest.mark.parametrize(
    ("node", "given", "status", "check"),
    [
        (
            "huge_int",
            "1",
            "succeeded",
            lambda n: n["output"] == {"__flowledger__": "int", "value": "1e5000", "digits": 5001},
        ),
        ("surrogate_error", "1", "failed", lambda n: n["error"]["message"] == "\ufffd"),
        ("surrogate", json.dumps("\ud800"), "succeeded", lambda n: n["input"] == "\ufffd" and "\ufffd" in n["output"]),
    ],
)
def test_a_run_with_values_json_cannot_hold_ends_in_the_receiver_with_its_records(
    node: str,
    given: str,
    status: str,
    check: Callable[[dict[str, Any]], bool],
    live: LiveReceiver,
    write_definition: Callable[..., Path],
    tmp_path: Path,
) -> None:
    """10**5000 as output, a lone surrogate in an error or in input/output: run and node events reach the receiver."""
    workflow_id = node.replace("_", "-")
    definition = write_definition(
        f"""
        flowledger: 1
        workflow: {{id: {workflow_id}}}
        nodes:
          - {{id: odd, call: "tests.workflow.nodes:{node}"}}
        """
    )
    module = tmp_path / "odd.py"
    module.write_text(generate(definition, display_name="wf.yaml"), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(module), "--input", given],
        cwd=REPO_ROOT,
        env=child_env(FLOWLEDGER_ENDPOINT=live.url, FLOWLEDGER_SPOOL_DIR=str(tmp_path / "spool")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == (0 if status == "succeeded" else 1), done.stderr
    assert "Traceback" not in done.stderr
    run = _finished_run(live, workflow_id)
    assert run["status"] == status
    [attempt] = run["nodes"]
    assert attempt["status"] == status
    assert check(attempt), attempt
    if status == "failed":
        assert run["error"]["message"] == "\ufffd"
