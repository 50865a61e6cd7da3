"""plan_resume: which nodes a resume reuses and why the others run again (on the evidence the receiver answers)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from flowledger.workflow import Call, Node, ResumeRefused, Workflow, plan_resume
from flowledger.workflow._resume import node_sha256
from tests.instrument._fixed_answer import fixed_answer

WF = Workflow(
    id="plan",
    nodes=(
        Node("a", call=Call("m", "a")),
        Node("b", call=Call("m", "b"), needs=("a",)),
        Node("c", call=Call("m", "c"), needs=("b",)),
    ),
    output="c",
    definition_sha256="1" * 64,
)


def _node(node_id: str, status: str = "succeeded", output: Any = None, **extra: Any) -> dict[str, Any]:
    text = json.dumps(output if output is not None else {node_id: 1})
    entry = {
        "node_id": node_id,
        "status": status,
        "effect": False,
        "idempotency_key": None,
        "node_sha256": node_sha256(next(n for n in WF.nodes if n.id == node_id)),
        "output_capture": "full",
        "output_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "output": text,
        "problem": None,
        "tampered": False,
    }
    entry.update(extra)
    return entry


def _evidence(*nodes: dict[str, Any], status: str = "failed") -> dict[str, Any]:
    text = json.dumps({"p": 1})
    trigger = {"capture": "full", "sha256": hashlib.sha256(text.encode()).hexdigest(), "text": text, "problem": None}
    run = {"run_id": "r1", "workflow_id": "plan", "status": status, "definition_sha256": "1" * 64, "input": trigger}
    return {"run": run, "tree": {"size": 9, "root": "00"}, "nodes": list(nodes)}


def test_a_redacted_output_is_not_reused_and_the_plan_says_why() -> None:
    """b's output was redacted: b and c run again, each with its reason; a is reused with its recorded output."""
    evidence = _evidence(
        _node("a"),
        _node("b", output_capture="redacted", output=None, problem="its recorded output is not the real one: ..."),
        _node("c", status="skipped"),
    )
    plan = plan_resume(WF, evidence)
    assert plan.reuse == {"a": {"a": 1}}
    assert plan.rerun["b"].startswith("its output cannot be reused: its recorded output is not the real one")
    assert plan.rerun["c"] == "it skipped"
    assert plan.payload == {"p": 1}


def test_from_reruns_the_node_and_those_below_it() -> None:
    """--from b on a succeeded run: a reused, b and c run again because of --from."""
    plan = plan_resume(WF, _evidence(_node("a"), _node("b"), _node("c"), status="succeeded"), from_node="b")
    assert list(plan.reuse) == ["a"]
    assert plan.rerun == {"b": "--from b", "c": "--from b"}


def test_an_output_that_does_not_match_its_hash_refuses_the_resume() -> None:
    """The module re-hashes each output: a text that does not hash to output_sha256 is refused."""
    forged = _node("a")
    forged["output"] = json.dumps({"a": 2})
    with pytest.raises(ResumeRefused, match="node `a` does not match its hash in the ledger"):
        plan_resume(WF, _evidence(forged, _node("b"), _node("c", status="failed")))


def test_a_run_of_another_workflow_is_refused() -> None:
    """The evidence names the workflow: resuming it with another workflow's module is refused."""
    evidence = _evidence(_node("a"))
    evidence["run"]["workflow_id"] = "other"
    with pytest.raises(ResumeRefused, match="is a run of workflow 'other', not of 'plan'"):
        plan_resume(WF, evidence)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--from", "a"], "--from, --repeat-effects and --project go with --resume RUN_ID"),
        (["--repeat-effects"], "--from, --repeat-effects and --project go with --resume RUN_ID"),
        (["--project", "shop"], "--from, --repeat-effects and --project go with --resume RUN_ID"),
        (["--resume", "r1", "--serve"], "--resume runs once; it does not go with --serve"),
    ],
)
def test_resume_flags_out_of_place_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The generated module's command line refuses resume flags that do not fit, exit 2, before anything runs."""
    from flowledger.workflow import main

    assert main(WF, argv) == 2
    assert message in capsys.readouterr().err


def test_from_an_unknown_node_is_a_usage_error_before_the_run_is_read(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--from NODE that the workflow lacks exits 2 naming it and the known nodes; the receiver is never asked."""
    from flowledger.workflow import main

    with fixed_answer(404) as receiver:
        monkeypatch.setenv("FLOWLEDGER_ENDPOINT", f"http://127.0.0.1:{receiver.port}")
        assert main(WF, ["--resume", "r1", "--from", "nope"]) == 2
        assert receiver.seen == []
    assert capsys.readouterr().err == "error: --from nope: the workflow has no such node (its nodes: a, b, c)\n"


def test_a_stuck_run_is_resumed_and_the_plan_says_to_stop_its_process() -> None:
    """stuck (silent past its heartbeats, as a run whose process died) is resumed; the plan warns to stop it first."""
    plan = plan_resume(WF, _evidence(_node("a"), _node("b", status="running"), status="stuck"))
    assert list(plan.reuse) == ["a"]
    assert plan.rerun == {"b": "it did not finish", "c": "it did not run"}
    assert "which is stuck" in plan.describe().splitlines()[0]
    assert "stop it first" in plan.describe().splitlines()[0]


def test_new_trigger_data_without_the_recorded_one_runs_the_roots_again() -> None:
    """--input when the run's trigger data was not recorded: it cannot be shown equal, so a runs again, and b, c."""
    evidence = _evidence(_node("a"), _node("b"), _node("c", status="failed"))
    evidence["run"]["input"] = {"text": None, "sha256": None, "problem": "it was not recorded"}
    plan = plan_resume(WF, evidence, payload={"p": 1}, has_payload=True)
    assert plan.reuse == {}
    assert plan.rerun["a"] == "the trigger data differs from the run's"
    assert plan.payload == {"p": 1}
    same = plan_resume(
        WF,
        _evidence(_node("a"), _node("b"), _node("c", status="failed")),
        payload={"p": 1},
        has_payload=True,
    )
    assert list(same.reuse) == ["a", "b"]
