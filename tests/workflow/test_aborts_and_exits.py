"""Every node and map item of a run ends with a record: when the run is aborted, when a node ends the process
(``sys.exit``) or raises KeyboardInterrupt, and when a map's input is empty.

The node functions the definitions call are defined here (``tests.workflow.test_aborts_and_exits:NAME``).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import httpx
import pytest

import flowledger
from flowledger import RunAborted
from flowledger import workflow as fw
from flowledger._exceptions import WorkflowFailed
from flowledger._wire import RunStatus
from flowledger.testing import CapturedEvents
from tests.instrument.delivery._sender_support import REPO_ROOT, child_env
from tests.receiver._support import LiveReceiver

Build = Callable[..., ModuleType]

HERE: Final = "tests.workflow.test_aborts_and_exits"
"""Where the definitions find the node functions below."""
EXIT_FAILED: Final = 1
"""The generated module's exit code for a run that did not succeed."""
RECORDS_TIMEOUT_S: Final = 15.0
"""How long the receiver may take to show a subprocess's records (a busy machine)."""


# --- node functions ------------------------------------------------------------


def exits(value: Any) -> Any:
    """A sync node that ends the process instead of returning."""
    sys.exit(0)


async def aexits(value: Any, *, code: int = 0) -> Any:
    """An async node that ends the process instead of returning."""
    raise SystemExit(code)


async def interrupts(value: Any) -> Any:
    """An async node that raises KeyboardInterrupt itself."""
    raise KeyboardInterrupt


def ident(value: Any) -> Any:
    """Returns its input."""
    return value


async def nap(value: Any, *, delay_s: float = 30.0) -> Any:
    """Sleeps ``delay_s`` (far past any deadline of these tests), then returns its input."""
    await asyncio.sleep(delay_s)
    return value


async def slow_true(value: Any) -> bool:
    """A ``when`` predicate that takes far longer than the run's deadline."""
    await asyncio.sleep(30.0)
    return True


def spend_one(value: Any) -> Any:
    """Reports one dollar of cost."""
    flowledger.cost(usd=1)
    return value


# --- helpers -------------------------------------------------------------------


def _only(events: CapturedEvents, node_id: str) -> dict[str, Any]:
    """The one ``node_finished`` of ``node_id`` (its data)."""
    found = events.nodes(node_id)
    assert len(found) == 1, found
    data: dict[str, Any] = found[0]["data"]
    return data


def _by_item(events: CapturedEvents, node_id: str) -> dict[int | None, list[dict[str, Any]]]:
    """The ``node_finished`` records of ``node_id``, by map item."""
    items: dict[int | None, list[dict[str, Any]]] = {}
    for event in events.nodes(node_id):
        items.setdefault(event["data"].get("item"), []).append(event["data"])
    return items


def _run_of(events: CapturedEvents) -> dict[str, Any]:
    (run,) = events.runs()
    data: dict[str, Any] = run["data"]
    return data


def _no_escape(module: ModuleType, payload: Any) -> None:
    """Run ``module`` on ``payload``; a SystemExit or KeyboardInterrupt escaping the run fails the test."""
    try:
        asyncio.run(module.run(payload))
    except (SystemExit, KeyboardInterrupt) as exc:
        pytest.fail(f"{type(exc).__name__} escaped the run: {exc!r}")


# --- a node that ends the process ------------------------------------------------------


def test_a_sync_node_calling_sys_exit_0_fails_itself_and_the_run(build: Build, events: CapturedEvents) -> None:
    """sys.exit(0) in a sync node fails that node (NodeExited naming it), fails the run, skips its dependents."""
    module = build(
        f"""
        flowledger: 1
        workflow: {{id: exits}}
        output: b
        nodes:
          - {{id: a, call: "{HERE}:exits"}}
          - {{id: b, call: "{HERE}:ident", needs: [a]}}
        """
    )
    with pytest.raises(WorkflowFailed) as info:
        _no_escape(module, 1)
    assert info.value.node_id == "a"
    assert isinstance(info.value.__cause__, Exception)
    assert isinstance(info.value.__cause__.__cause__, SystemExit)
    a = _only(events, "a")
    assert a["status"] == "failed"
    assert a["error"]["type"].endswith("NodeExited")
    assert "node `a` called sys.exit(0)" in a["error"]["message"]
    assert "output" not in a
    assert _only(events, "b")["skip_reason"] == "needs `a`, which failed"
    run = _run_of(events)
    assert run["status"] == "failed"
    assert run["error"]["node_id"] == "a"
    assert run["error"]["type"].endswith("NodeExited")


@pytest.mark.parametrize("timeout", ["", ", timeout_s: 30"], ids=["no limit", "under a timeout"])
def test_an_async_map_item_raising_system_exit_fails_the_node(
    build: Build, events: CapturedEvents, timeout: str
) -> None:
    """raise SystemExit(3) in an async map item fails the item and the node; the run fails naming it."""
    module = build(
        f"""
        flowledger: 1
        workflow: {{id: aexits}}
        nodes:
          - {{id: m, call: "{HERE}:aexits", with: {{code: 3}}, map: {{max_concurrency: 1}}{timeout}}}
        """
    )
    with pytest.raises(WorkflowFailed) as info:
        _no_escape(module, [1, 2])
    assert info.value.node_id == "m"
    items = _by_item(events, "m")
    assert [r["status"] for r in items[0]] == ["failed"]
    assert "node `m` called sys.exit(3)" in items[0][0]["error"]["message"]
    assert [r["skip_reason"] for r in items[1]] == ["an earlier item failed"]
    assert _run_of(events)["error"]["node_id"] == "m"


def test_a_when_predicate_calling_sys_exit_fails_the_node(build: Build, events: CapturedEvents) -> None:
    """SystemExit from a `when` predicate fails the node in its `when` phase, as any error of the predicate does."""
    module = build(
        f"""
        flowledger: 1
        workflow: {{id: when_exits}}
        nodes:
          - {{id: a, call: "{HERE}:ident", when: "{HERE}:aexits"}}
        """
    )
    with pytest.raises(WorkflowFailed) as info:
        _no_escape(module, 1)
    assert info.value.node_id == "a"
    a = _only(events, "a")
    assert a["status"] == "failed"
    assert a["attributes"]["flowledger.phase"] == "when"
    assert a["error"]["type"].endswith("NodeExited")


def test_a_node_raising_keyboard_interrupt_is_recorded_aborted_then_reaches_the_caller(
    build: Build, events: CapturedEvents
) -> None:
    """A node raising KeyboardInterrupt: the run is recorded aborted (interrupted), then the caller gets it."""
    module = build(
        f"""
        flowledger: 1
        workflow: {{id: kbd}}
        output: b
        nodes:
          - {{id: a, call: "{HERE}:interrupts"}}
          - {{id: b, call: "{HERE}:ident", needs: [a]}}
        """
    )
    with pytest.raises(KeyboardInterrupt) as info:
        asyncio.run(module.run(1))
    assert info.traceback[-1].name == "interrupts"  # the node's own, raised again
    a = _only(events, "a")
    assert a["status"] == "failed"
    assert a["error"]["type"].endswith("RunAborted")
    assert "node `a` raised KeyboardInterrupt" in a["error"]["message"]
    assert _only(events, "b")["skip_reason"] == "the run was aborted (interrupted)"
    run = _run_of(events)
    assert run["status"] == "aborted"
    assert run["error"]["reason"] == "interrupted"


def test_a_when_predicate_raising_keyboard_interrupt_fails_the_node_and_interrupts_the_run(
    build: Build, events: CapturedEvents
) -> None:
    """KeyboardInterrupt in a `when` predicate fails the node in its `when` phase (RunAborted), the run aborted."""
    module = build(
        f"""
        flowledger: 1
        workflow: {{id: when_kbd}}
        output: b
        nodes:
          - {{id: a, call: "{HERE}:ident", when: "{HERE}:interrupts"}}
          - {{id: b, call: "{HERE}:ident", needs: [a]}}
        """
    )
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(module.run(1))
    a = _only(events, "a")
    assert a["status"] == "failed"
    assert a["attributes"]["flowledger.phase"] == "when"
    assert a["error"]["type"].endswith("RunAborted")
    assert "node `a` raised KeyboardInterrupt" in a["error"]["message"]
    assert _only(events, "b")["skip_reason"] == "the run was aborted (interrupted)"
    run = _run_of(events)
    assert run["status"] == "aborted"
    assert run["error"]["reason"] == "interrupted"


def test_execute_run_for_a_host_handling_sigint_reports_a_node_s_keyboard_interrupt(
    build: Build, events: CapturedEvents
) -> None:
    """execute_run(raise_interrupt=False) returns a node's KeyboardInterrupt as the aborted run it recorded."""
    module = build(
        f"""
        flowledger: 1
        workflow: {{id: kbd_result}}
        nodes:
          - {{id: a, call: "{HERE}:interrupts"}}
        """
    )
    result = asyncio.run(fw.execute_run(module.WORKFLOW, 1, raise_interrupt=False))
    assert result.status is RunStatus.ABORTED
    assert isinstance(result.error, RunAborted)
    assert result.error.reason == "interrupted"
    assert isinstance(result.error.__cause__, KeyboardInterrupt)
    assert _run_of(events)["status"] == "aborted"


def test_a_generated_module_whose_node_calls_sys_exit_0_exits_1_with_the_run_recorded_failed(
    write_definition: Callable[..., Path], tmp_path: Path, live: LiveReceiver
) -> None:
    """`python OUT.py`: sys.exit(0) in a node exits 1 naming the node; the receiver has the run failed at it."""
    from flowledger.codegen import generate

    definition = write_definition(
        f"""
        flowledger: 1
        workflow: {{id: exits_cli}}
        output: b
        nodes:
          - {{id: a, call: "{HERE}:exits"}}
          - {{id: b, call: "{HERE}:ident", needs: [a]}}
        """
    )
    module = tmp_path / "exits_cli.py"
    module.write_text(generate(definition, display_name="wf.yaml"), encoding="utf-8")
    env = child_env(FLOWLEDGER_ENDPOINT=live.url, FLOWLEDGER_SPOOL_DIR=str(tmp_path / "spool"))
    done = subprocess.run(
        [sys.executable, str(module), "--input", "1"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == EXIT_FAILED, done.stderr
    assert done.stdout == ""
    assert "failed at node `a`" in done.stderr
    assert "sys.exit(0)" in done.stderr
    run = _received_run(live, "exits_cli", nodes=2)
    assert run["status"] == "failed"
    assert run["error"]["node_id"] == "a"
    nodes = {n["node_id"]: n for n in run["nodes"]}
    assert nodes["a"]["status"] == "failed"
    assert nodes["a"]["error"]["type"].endswith("NodeExited")
    assert nodes["b"]["status"] == "skipped"


def _received_run(live: LiveReceiver, workflow_id: str, *, nodes: int) -> dict[str, Any]:
    """The workflow's one run as the receiver has it, once finished with ``nodes`` node records (polled)."""
    deadline = time.monotonic() + RECORDS_TIMEOUT_S
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        runs = httpx.get(f"{live.url}/api/runs", params={"workflow_id": workflow_id}, timeout=5).json()["runs"]
        if runs:
            run = httpx.get(f"{live.url}/api/runs/{runs[0]['run_id']}", timeout=5).json()
            if run["status"] != "running" and len(run["nodes"]) >= nodes:
                return run
        time.sleep(0.1)
    pytest.fail(f"the receiver did not get the records in time; it has: {run}")


def test_a_decorated_node_calling_sys_exit_0_is_not_recorded_as_a_success(events: CapturedEvents) -> None:
    """Outside the runtime, @flowledger.node lets sys.exit(0) end the process but records the node and run failed."""

    @flowledger.node
    def leave(value: int) -> int:
        sys.exit(0)

    with pytest.raises(SystemExit):
        leave(1)
    node = _only(events, "leave")
    assert node["status"] == "failed"
    assert node["error"]["type"].endswith("NodeExited")
    assert "node `leave` called sys.exit(0)" in node["error"]["message"]
    run = _run_of(events)
    assert run["status"] == "failed"
    assert run["error"]["node_id"] == "leave"


# --- aborted runs ----------------------------------------------------------------------


def test_map_items_waiting_when_the_deadline_passes_are_skipped_as_aborted(
    build: Build, events: CapturedEvents
) -> None:
    """Past deadline_s, a map's items that never started are recorded skipped, `the run was aborted (deadline)`."""
    module = build(
        f"""
        flowledger: 1
        workflow: {{id: late_items}}
        limits: {{deadline_s: 0.5}}
        nodes:
          - {{id: m, call: "{HERE}:nap", map: {{max_concurrency: 1}}}}
        """
    )
    with pytest.raises(RunAborted):
        asyncio.run(module.run([1, 2, 3]))
    items = _by_item(events, "m")
    assert sorted(items, key=str) == [0, 1, 2]
    assert all(len(records) == 1 for records in items.values()), items
    assert items[0][0]["status"] in ("failed", "skipped")
    for index in (1, 2):
        assert items[index][0]["status"] == "skipped"
        assert items[index][0]["skip_reason"] == "the run was aborted (deadline)"


def test_a_map_item_refused_by_the_budget_and_those_after_it_are_recorded(build: Build, events: CapturedEvents) -> None:
    """Past budget_usd the item its limit check refused, and those after it, are skipped as the run aborted (budget)."""
    module = build(
        f"""
        flowledger: 1
        workflow: {{id: costly_items}}
        limits: {{budget_usd: 0.5}}
        nodes:
          - {{id: m, call: "{HERE}:spend_one", map: {{max_concurrency: 1}}}}
        """
    )
    with pytest.raises(RunAborted) as info:
        asyncio.run(module.run([1, 2, 3]))
    assert info.value.reason == "budget"
    items = _by_item(events, "m")
    assert [r["status"] for r in items[0]] == ["succeeded"]
    for index in (1, 2):
        assert [(r["status"], r["skip_reason"]) for r in items[index]] == [("skipped", "the run was aborted (budget)")]
    assert _run_of(events)["status"] == "aborted"


def test_a_node_in_its_when_phase_at_the_deadline_is_skipped_as_aborted(build: Build, events: CapturedEvents) -> None:
    """A node whose `when` predicate is still running when the deadline passes is skipped, the run aborted."""
    module = build(
        f"""
        flowledger: 1
        workflow: {{id: late_when}}
        limits: {{deadline_s: 0.5}}
        nodes:
          - {{id: a, call: "{HERE}:ident", when: "{HERE}:slow_true"}}
          - {{id: b, call: "{HERE}:ident", needs: [a]}}
        """
    )
    with pytest.raises(RunAborted):
        asyncio.run(module.run(1))
    assert _only(events, "a")["skip_reason"] == "the run was aborted (deadline)"
    assert _only(events, "b")["skip_reason"] == "the run was aborted (deadline)"
    assert _run_of(events)["status"] == "aborted"


# --- an empty map ------------------------------------------------------------------------


def test_a_map_over_an_empty_list_records_the_node_succeeded_with_output_empty(
    build: Build, events: CapturedEvents
) -> None:
    """A map over [] records one attempt of the node (phase `map`, no item) that succeeded with the output []."""
    module = build(
        f"""
        flowledger: 1
        workflow: {{id: empty_map}}
        nodes:
          - {{id: m, call: "{HERE}:ident", map: {{max_concurrency: 2}}}}
          - {{id: after, call: "{HERE}:ident", needs: [m]}}
        """
    )
    assert asyncio.run(module.run([])) == []
    m = _only(events, "m")
    assert m["status"] == "succeeded"
    assert m["output"] == []
    assert "item" not in m
    assert m["attributes"]["flowledger.phase"] == "map"
    assert _only(events, "after")["status"] == "succeeded"
    assert _run_of(events)["status"] == "succeeded"
