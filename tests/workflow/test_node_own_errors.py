"""What a node's own code (or its `when` predicate's answer) raises is the node's error, recorded as such: a
TimeoutError of its own is neither its ``timeout_s`` nor the run's deadline, an answer whose truth test raises fails
the `when` phase, and a long false answer still gives a skip the receiver keeps."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

import flowledger
from flowledger._exceptions import WorkflowFailed
from flowledger._wire import event_schema
from flowledger.codegen import generate
from flowledger.testing import CapturedEvents
from tests.receiver._support import LiveReceiver

Build = Callable[..., ModuleType]

ROOT = Path(__file__).resolve().parents[2]
SRC = Path(flowledger.__file__).resolve().parents[1]
RECORDS_TIMEOUT_S = 60.0
"""How long the receiver may take to have a child's records (a bound for a poll, not a measure)."""


def _penalties(event: dict[str, Any]) -> set[str]:
    return set(event["data"].get("cost", {}).get("breakdown", {}))


def test_a_node_s_own_timeout_error_under_a_deadline_is_retried_and_aborts_nothing(
    build: Build, events: CapturedEvents
) -> None:
    """deadline_s 300, retry 3, a node whose upstream call times out once: its first attempt fails with that
    TimeoutError, the second succeeds; the run is not aborted and the node beside it is not cancelled."""
    module = build(
        """
        flowledger: 1
        workflow: {id: own_timeout}
        limits: {deadline_s: 300}
        output: fetch
        nodes:
          - id: fetch
            call: "tests.workflow.nodes:atimed_out_once"
            with: {key: own-timeout-deadline}
            retry: {attempts: 3, backoff_s: 0}
          - {id: beside, call: "tests.workflow.nodes:asleepy", with: {delay_s: 0.3}}
        """
    )
    assert asyncio.run(module.run(7)) == 7
    fetch = events.nodes("fetch")
    assert [e["data"]["status"] for e in fetch] == ["failed", "succeeded"]
    assert fetch[0]["data"]["error"]["type"] == "TimeoutError"
    assert "penalty:timeout" not in _penalties(fetch[0])
    assert [e["data"]["status"] for e in events.nodes("beside")] == ["succeeded"]
    assert events.runs()[0]["data"]["status"] == "succeeded"


@pytest.mark.parametrize("function", ["timed_out", "atimed_out_once"], ids=["sync, in a thread", "async"])
def test_a_node_s_own_timeout_error_is_not_a_node_timeout(build: Build, events: CapturedEvents, function: str) -> None:
    """timeout_s 10, a node raising TimeoutError at once: it fails with that TimeoutError (the run's error's cause),
    not a NodeTimeout, and no timeout penalty is charged."""
    key = f"own-timeout-{function}"
    with_key = f", with: {{key: {key}}}" if function.startswith("a") else ""
    module = build(
        "flowledger: 1\nworkflow: {id: own_timeout_s}\nnodes:\n"
        f'  - {{id: call, call: "tests.workflow.nodes:{function}", timeout_s: 10{with_key}}}\n'
    )
    with pytest.raises(WorkflowFailed) as info:
        asyncio.run(module.run(1))
    assert type(info.value.__cause__) is TimeoutError
    (attempt,) = events.nodes("call")
    assert attempt["data"]["error"]["type"] == "TimeoutError"
    assert "timeout_s" not in attempt["data"]["error"]["message"]
    assert "penalty:timeout" not in _penalties(attempt)


def test_map_items_raising_timeout_error_under_a_deadline_fail_only_themselves(
    build: Build, events: CapturedEvents
) -> None:
    """A mapped node (on_error: continue) whose items raise TimeoutError under deadline_s 300: the items that ran are
    recorded failed with it (those after them skipped), and the run succeeds rather than being aborted at its
    deadline."""
    module = build(
        """
        flowledger: 1
        workflow: {id: own_timeout_map}
        limits: {deadline_s: 300}
        output: after
        nodes:
          - {id: each, call: "tests.workflow.nodes:timed_out", map: {max_concurrency: 2}, on_error: continue}
          - {id: after, call: "tests.workflow.nodes:asleepy", with: {delay_s: 0.2}}
        """
    )
    assert asyncio.run(module.run([1, 2, 3])) == [1, 2, 3]
    items = events.nodes("each")
    assert sorted(e["data"]["item"] for e in items) == [0, 1, 2]
    failed = [e["data"] for e in items if e["data"]["status"] == "failed"]
    assert failed
    assert {f["error"]["type"] for f in failed} == {"TimeoutError"}
    assert {e["data"].get("skip_reason") for e in items if e["data"] not in failed} <= {"an earlier item failed"}
    assert [e["data"]["status"] for e in events.nodes("after")] == ["succeeded"]
    assert events.runs()[0]["data"]["status"] == "succeeded"


def test_a_when_answer_whose_truth_test_raises_fails_the_when_phase(build: Build, events: CapturedEvents) -> None:
    """A `when` answer whose bool() raises (as a pandas frame's does) is recorded as the node's failed `when`
    phase with that error, as a predicate that raises is; the run fails at the node."""
    module = build(
        """
        flowledger: 1
        workflow: {id: ambiguous_when}
        nodes:
          - {id: gated, call: "tests.workflow.nodes:echo", when: "tests.workflow.nodes:ambiguous"}
          - {id: after, call: "tests.workflow.nodes:echo", needs: [gated]}
        """
    )
    with pytest.raises(WorkflowFailed) as info:
        asyncio.run(module.run(1))
    assert info.value.node_id == "gated"
    (gated,) = events.nodes("gated")
    assert gated["data"]["status"] == "failed"
    assert gated["data"]["attributes"]["flowledger.phase"] == "when"
    assert gated["data"]["error"]["message"] == "the truth value of an Ambiguous is ambiguous"
    assert events.nodes("after")[0]["data"]["skip_reason"] == "needs `gated`, which failed"


def _skip_reason_limit() -> int:
    field = event_schema()["$defs"]["node_finished"]["properties"]["skip_reason"]
    return int(field["anyOf"][0]["maxLength"])


def test_a_long_false_when_answer_gives_a_skip_the_receiver_keeps(live: LiveReceiver, tmp_path: Path) -> None:
    """A false `when` answer whose repr is about 2,000 characters: the generated module's run reaches a real
    receiver with the node skipped, its reason cut to the wire format's limit (the skip is not rejected)."""
    (tmp_path / "wf.yaml").write_text(
        textwrap.dedent(
            """
            flowledger: 1
            workflow: {id: long-no}
            nodes:
              - {id: gated, call: "tests.workflow.nodes:echo", when: "tests.workflow.nodes:long_no"}
            """
        ),
        encoding="utf-8",
    )
    (tmp_path / "wf.py").write_text(generate(tmp_path / "wf.yaml", relative_to=tmp_path), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWLEDGER_", "OTEL_"))}
    env |= {
        "FLOWLEDGER_ENDPOINT": live.url,
        "FLOWLEDGER_SPOOL_DIR": str(tmp_path / "spool"),
        "FLOWLEDGER_EXPORT_SPANS": "0",
        "FLOWLEDGER_EXIT_FLUSH_S": "30",
        "PYTHONPATH": os.pathsep.join([str(SRC), str(ROOT)]),
    }
    done = subprocess.run(
        [sys.executable, "wf.py", "--input", "1"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "rejected" not in done.stderr
    deadline = time.monotonic() + RECORDS_TIMEOUT_S
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        runs = httpx.get(f"{live.url}/api/runs", params={"workflow_id": "long-no"}, timeout=5).json()["runs"]
        if runs:
            run = httpx.get(f"{live.url}/api/runs/{runs[0]['run_id']}", timeout=5).json()
            if run["status"] != "running" and run["nodes"]:
                break
        time.sleep(0.1)
    assert run.get("status") == "succeeded", run
    (gated,) = run["nodes"]
    assert gated["status"] == "skipped"
    reason = gated["skip_reason"]
    assert reason.startswith("when `tests.workflow.nodes:long_no` returned Verdict(ok=False, why='no line matches")
    assert len(reason) == _skip_reason_limit()
    assert reason.endswith("…")
