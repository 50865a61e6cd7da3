"""Resuming a run: reuse the recorded outputs of the nodes that succeeded, run the rest onward.

A resume reads the failed run from the receiver (``GET
/api/runs/{run_id}/outputs``): per node its outcome, its definition hash,
its effect key and, when the record holds it whole (captured in full, or kept whole by the default
capture in the node's event), its complete output,
which the receiver has checked against the ledger (the blob's hash, the
payload's hash, the chain and the Merkle tree). :func:`plan_resume` then
decides, node by node in dependency order:

- a node is **reused** when it succeeded, its whole output is on record
  and verified, its definition is unchanged (the hash of its ``Node`` spec,
  recorded on every attempt), every node it needs is reused, and it is not
  at or below ``--from``;
- every other node **runs again**, and the plan says why (it failed, was
  skipped, its definition changed, its recorded output was redacted, cut
  or holds a value with no JSON form, it is mapped, a node it needs runs again, ``--from``);
- an effect that succeeded is **not repeated** when it runs again on the
  same input: its idempotency key matches the recorded one, so the attempt
  is recorded as a duplicate returning the recorded output (unless
  ``repeat_effects``).

Anything that was *changed* (a blob or ledger row that no longer matches)
refuses the whole resume with :class:`~flowledger.ResumeRefused`: reusing
an output the ledger does not vouch for would be worse than running again.
The client checks each output's hash once more on arrival.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote

from flowledger._exceptions import ResumeRefused
from flowledger._wire import NodeStatus
from flowledger.instrument._url import join_path, masked
from flowledger.workflow._spec import Env, Node, Workflow

__all__ = ["RecordedEffect", "ResumePlan", "fetch_evidence", "node_sha256", "plan_resume"]

FETCH_TIMEOUT_S: Final = 30.0


def _spec_json(node: Node) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        return {"env": value.name} if isinstance(value, Env) else value

    return {
        "call": None if node.call is None else str(node.call),
        "http": None
        if node.http is None
        else {
            "url": node.http.url,
            "method": str(node.http.method),
            "headers": {k: plain(v) for k, v in sorted(node.http.headers.items())},
        },
        "needs": list(node.needs),
        "with": {k: plain(v) for k, v in sorted(node.kwargs.items())},
        "when": None if node.when is None else str(node.when),
        "map": None if node.map is None else node.map.max_concurrency,
        "effect": node.effect,
        "on_error": str(node.on_error),
    }


def node_sha256(node: Node) -> str:
    """The sha256 of what a node does (call or request, arguments, needs, when, map, effect).

    Retries, timeouts and the line it is declared on are left out: changing them does not change what
    the node computes.
    """
    text = json.dumps(_spec_json(node), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class RecordedEffect:
    """An effect that succeeded in the resumed run: its key, and its output when it can be reused."""

    idempotency_key: str
    available: bool
    output: Any = None


@dataclass(frozen=True, slots=True)
class ResumePlan:
    """What a resume reuses and what it runs again."""

    run_id: str
    """The run resumed."""
    project: str | None
    """Its project ('' none; None when the receiver did not say): the resumed run is recorded in it, whatever
    project the app records to otherwise."""
    definition_sha256: str | None
    """That run's definition."""
    payload: Any
    reuse: Mapping[str, Any]
    """Node id -> the recorded output that stands in for running it."""
    rerun: Mapping[str, str]
    """Node id -> why it runs again."""
    effects: Mapping[str, RecordedEffect] = field(default_factory=dict)
    repeat_effects: bool = False

    def describe(self) -> str:
        """Which nodes are reused and which run again, and why (one line each)."""
        lines = [f"resuming run {self.run_id}:"]
        lines += [f"  reuse {node_id}" for node_id in self.reuse]
        lines += [f"  run   {node_id}: {why}" for node_id, why in self.rerun.items()]
        return "\n".join(lines)


def fetch_evidence(
    endpoint: str, run_id: str, *, api_key: str | None = None, project: str | None = None
) -> dict[str, Any]:
    """The run's outputs and their checks from the receiver at ``endpoint``; ResumeRefused when it cannot.

    ``project``: the run of that project, when its id is used in several (runs are per project).
    The messages name the endpoint masked (no password or query values): they are printed.
    """
    import httpx  # lazy: importing a generated module stays cheap

    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    shown = masked(endpoint)
    try:
        url = httpx.URL(join_path(endpoint, f"/api/runs/{quote(run_id, safe='')}/outputs"))  # the id: one segment
        if project is not None:  # merged into the endpoint's query: httpx's params= would replace it
            url = url.copy_merge_params({"project": project})
        response = httpx.get(url, headers=headers, timeout=FETCH_TIMEOUT_S)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise ResumeRefused(f"cannot read run {run_id} from the receiver at {shown}: {exc}") from None
    if response.status_code == 404:
        raise ResumeRefused(f"the receiver at {shown} has no run {run_id}" + _of(project))
    if response.status_code != 200:
        raise ResumeRefused(
            f"the receiver at {shown} answered {response.status_code} for run {run_id}{_of(project)}" + _said(response)
        )
    evidence: dict[str, Any] = response.json()
    return evidence


def _of(project: str | None) -> str:
    return "" if project is None else f" of project {project!r}"


def _said(response: Any) -> str:
    """``: `` and the receiver's error message, when its answer has one (a 409 says to name the project)."""
    try:
        message = response.json().get("error")
    except (ValueError, AttributeError):
        return ""
    return f": {message}" if isinstance(message, str) else ""


def _order(workflow: Workflow) -> list[Node]:
    """The nodes, each after the nodes it needs."""
    by_id = {n.id: n for n in workflow.nodes}
    done: dict[str, Node] = {}

    def visit(node: Node) -> None:
        if node.id in done:
            return
        for need in node.needs:
            visit(by_id[need])
        done[node.id] = node

    for node in workflow.nodes:
        visit(node)
    return list(done.values())


def _below(workflow: Workflow, start: str) -> set[str]:
    """``start`` and every node that depends on it, directly or not."""
    out = {start}
    changed = True
    while changed:
        changed = False
        for node in workflow.nodes:
            if node.id not in out and any(need in out for need in node.needs):
                out.add(node.id)
                changed = True
    return out


def _verified_text(run_id: str, what: str, text: str, digest: Any) -> Any:
    if hashlib.sha256(text.encode("utf-8")).hexdigest() != digest:
        raise ResumeRefused(
            f"cannot resume run {run_id}: the recorded output of {what} does not match its hash in the ledger"
        )
    return json.loads(text)


def plan_resume(
    workflow: Workflow,
    evidence: Mapping[str, Any],
    *,
    from_node: str | None = None,
    repeat_effects: bool = False,
    payload: Any = None,
    has_payload: bool = False,
) -> ResumePlan:
    """Decide what a resume of the run in ``evidence`` reuses (see the module docstring).

    ``payload`` (with ``has_payload``) replaces the run's recorded trigger data. Raises ResumeRefused
    when something recorded was changed, or when the run is of another workflow.
    """
    run = evidence["run"]
    run_id = str(run["run_id"])
    if run.get("workflow_id") != workflow.id:
        raise ResumeRefused(f"run {run_id} is a run of workflow {run.get('workflow_id')!r}, not of {workflow.id!r}")
    if from_node is not None and from_node not in {n.id for n in workflow.nodes}:
        known = ", ".join(n.id for n in workflow.nodes)
        raise ResumeRefused(f"--from {from_node}: the workflow has no such node (its nodes: {known})")
    recorded = {str(n["node_id"]): n for n in evidence.get("nodes", [])}
    tampered = [node_id for node_id, n in recorded.items() if n.get("tampered")]
    if tampered or (run.get("input") or {}).get("tampered"):
        what = tampered[0] if tampered else "the run's trigger data"
        problem = recorded[what]["problem"] if tampered else run["input"]["problem"]
        raise ResumeRefused(f"cannot resume run {run_id}: node `{what}`: {problem}")
    same_definition = run.get("definition_sha256") == workflow.definition_sha256
    forced = _below(workflow, from_node) if from_node is not None else set()
    reuse: dict[str, Any] = {}
    rerun: dict[str, str] = {}
    for node in _order(workflow):
        before = recorded.get(node.id)
        why: str | None = None
        if before is None:
            why = "it is new in this definition" if not same_definition else "it did not run"
        elif node.id in forced:
            why = f"--from {from_node}"
        elif before["status"] != NodeStatus.SUCCEEDED.value:
            done = before["status"] in (NodeStatus.FAILED.value, NodeStatus.SKIPPED.value)
            why = f"it {before['status']}" if done else "it did not finish"
        elif not same_definition and before.get("node_sha256") != node_sha256(node):
            why = "its definition changed"
        elif before.get("problem"):
            why = f"its output cannot be reused: {before['problem']}"
        else:
            blocker = next((need for need in node.needs if need not in reuse), None)
            if blocker is not None:
                why = f"it needs `{blocker}`, which runs again"
        if why is not None:
            rerun[node.id] = why
            continue
        assert before is not None
        reuse[node.id] = _verified_text(run_id, f"node `{node.id}`", before["output"], before["output_sha256"])
    effects = {
        node_id: RecordedEffect(
            idempotency_key=str(n["idempotency_key"]),
            available=n.get("output") is not None and not n.get("problem"),
            output=_verified_text(run_id, f"node `{node_id}`", n["output"], n["output_sha256"])
            if n.get("output") is not None and not n.get("problem")
            else None,
        )
        for node_id, n in recorded.items()
        if n.get("effect") and n.get("idempotency_key") and n["status"] == NodeStatus.SUCCEEDED.value
    }
    if not has_payload:
        roots_rerun = [n.id for n in workflow.nodes if not n.needs and n.id in rerun]
        trigger = run.get("input") or {}
        if trigger.get("text") is not None:
            payload = _verified_text(run_id, "the run's trigger data", trigger["text"], trigger["sha256"])
        elif roots_rerun:
            raise ResumeRefused(
                f"cannot resume run {run_id}: node `{roots_rerun[0]}` runs again on the run's trigger data, "
                f"which cannot be reused ({trigger.get('problem')}); pass it with --input"
            )
    return ResumePlan(
        run_id=run_id,
        project=(run["project"] or "") if "project" in run else None,
        definition_sha256=run.get("definition_sha256"),
        payload=payload,
        reuse=reuse,
        rerun=rerun,
        effects=effects,
        repeat_effects=repeat_effects,
    )
