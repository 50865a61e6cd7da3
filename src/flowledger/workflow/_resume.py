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
  or holds a value with no JSON form, it is mapped, a node it needs runs again, ``--from``,
  it is an effect a dry run only simulated, or it reads the trigger data and
  ``--input`` gave other trigger data than the run's);
- an effect that succeeded is **not repeated** when it runs again on the
  same input: its idempotency key matches the recorded one, so the attempt
  is recorded as a duplicate returning the recorded output (unless
  ``repeat_effects``). A simulated effect never stands in for one.

Which runs are resumed: not one still ``running`` (its own process is
doing the same nodes: they and their effects would run twice), but a
``stuck`` one (silent past its heartbeats, as a run whose process died is;
the plan says to stop the process if it is alive), a failed or aborted one,
and a succeeded one when something runs again (``--from``, a changed
definition or trigger data, a simulated effect): one that would reuse
everything is refused as pointless.

Anything that was *changed* (a blob or ledger row that no longer matches,
or a row that is not the node's own) refuses the whole resume with
:class:`~flowledger.ResumeRefused`: reusing an output the ledger does not
vouch for would be worse than running again. The client checks each
output's hash once more on arrival, and the answer's shape before reading it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote

from flowledger._apikey import api_key_problem
from flowledger._exceptions import ConfigError, ResumeRefused
from flowledger._url import join_path, masked
from flowledger._wire import NodeStatus, RunStatus
from flowledger.instrument._config import _ENV, DEFAULT_ENDPOINT
from flowledger.workflow._os_reason import os_reason
from flowledger.workflow._spec import Env, Node, Workflow

__all__ = [
    "NOT_EVIDENCE",
    "RecordedEffect",
    "ResumePlan",
    "fetch_evidence",
    "node_sha256",
    "plan_resume",
    "resume_source",
]

FETCH_TIMEOUT_S: Final = 30.0
NOT_EVIDENCE: Final = "the receiver's answer is not resume evidence"
"""Said of an answer that is not what ``GET /api/runs/{id}/outputs`` answers (then what is wrong with it)."""
_ENDPOINT_VAR: Final = "FLOWLEDGER_ENDPOINT"
_KEY_VAR: Final = "FLOWLEDGER_API_KEY"


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
    status: RunStatus | None = None
    """The resumed run's status (None: not known)."""

    def describe(self) -> str:
        """Which nodes are reused and which run again, and why (one line each)."""
        lines = [f"resuming run {self.run_id}:"]
        if self.status is RunStatus.STUCK:
            lines = [
                f"resuming run {self.run_id}, which is stuck (the receiver has not heard from it for a while; "
                "if its process is still alive, stop it first):"
            ]
        lines += [f"  reuse {node_id}" for node_id in self.reuse]
        lines += [f"  run   {node_id}: {why}" for node_id, why in self.rerun.items()]
        return "\n".join(lines)


def resume_source(endpoint: str | None = None, env: Mapping[str, str] | None = None) -> tuple[str, str | None]:
    """The receiver a resume reads the run from and the API key it sends: ``endpoint`` (``--endpoint``), else
    ``$FLOWLEDGER_ENDPOINT``, else the default; the key from ``$FLOWLEDGER_API_KEY``.

    Each is checked as the SDK checks its settings (the same parser and wording, :mod:`flowledger.instrument._config`),
    but a value that cannot be used is an error here, not a warning: a resume that quietly read another receiver, or
    sent no key, would refuse for a reason that hides the real one. ConfigError names the variable (or
    ``--endpoint``) and shows the URL masked, never the key. A variable set empty counts as unset.
    """
    source = os.environ if env is None else env
    origin, text = ("--endpoint", endpoint) if endpoint is not None else (_ENDPOINT_VAR, source.get(_ENDPOINT_VAR))
    if text is None or (origin == _ENDPOINT_VAR and not text.strip()):  # set empty: unset, as it always was
        url = DEFAULT_ENDPOINT
    else:
        _, parse, accepts = _ENV[_ENDPOINT_VAR]
        try:
            url = parse(text)
        except ValueError:
            raise ConfigError(f"{origin} {masked(text)!r} cannot be used: it must be {accepts}") from None
    key = source.get(_KEY_VAR) or None  # set empty: no key, as it always was
    if key is not None:
        problem = api_key_problem(key, origin=_KEY_VAR)
        if problem is not None:
            raise ConfigError(problem)
    return url, key


def fetch_evidence(
    endpoint: str, run_id: str, *, api_key: str | None = None, project: str | None = None
) -> dict[str, Any]:
    """The run's outputs and their checks from the receiver at ``endpoint``; ResumeRefused when it cannot.

    ``project``: the run of that project, when its id is used in several (runs are per project).
    The messages name the endpoint masked (no password or query values) and never hold the key or the text of an
    exception from sending the request (it may quote a header): they are printed.
    """
    import httpx  # lazy: importing a generated module stays cheap

    shown = masked(endpoint)
    if api_key is not None and api_key_problem(api_key, origin="the API key") is not None:
        raise ResumeRefused(f"cannot read run {run_id} from the receiver at {shown}: the API key cannot be sent")
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        url = httpx.URL(join_path(endpoint, f"/api/runs/{quote(run_id, safe='')}/outputs"))  # the id: one segment
        if project is not None:  # merged into the endpoint's query: httpx's params= would replace it
            url = url.copy_merge_params({"project": project})
        response = httpx.get(url, headers=headers, timeout=FETCH_TIMEOUT_S)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise ResumeRefused(f"cannot read run {run_id} from the receiver at {shown}: {_failure(exc)}") from None
    if response.status_code == 404:
        raise ResumeRefused(f"the receiver at {shown} has no run {run_id}" + _of(project))
    if response.status_code != 200:
        raise ResumeRefused(
            f"the receiver at {shown} answered {response.status_code} for run {run_id}{_of(project)}" + _said(response)
        )
    try:
        evidence = response.json()
    except (ValueError, RecursionError):  # ValueError: not JSON, or not UTF-8
        kind = response.headers.get("content-type", "no content type").partition(";")[0]
        raise ResumeRefused(
            f"cannot resume run {run_id}: {NOT_EVIDENCE}: it is not JSON (the receiver at {shown} answered 200 "
            f"with {kind})"
        ) from None
    shape = _evidence_problem(evidence)
    if shape is None and evidence["run"]["run_id"] != run_id:
        shape = f"it is the evidence of run {evidence['run']['run_id']}"
    if shape is not None or not isinstance(evidence, dict):  # JSON's object is a dict: the second never holds
        raise ResumeRefused(f"cannot resume run {run_id}: {NOT_EVIDENCE}: {shape or 'it is not an object'}")
    return evidence


def _failure(exc: Exception) -> str:
    """What went wrong sending the request, in words of our own: an exception's text may quote a header value."""
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return f"it did not answer within {FETCH_TIMEOUT_S:g} s"
    if isinstance(exc, httpx.ConnectError):
        return f"the connection failed: {os_reason(exc) or 'no reason given'}"
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return "the endpoint is not a usable http:// or https:// URL"
    if isinstance(exc, httpx.LocalProtocolError):
        return "the request could not be sent (a header value is not valid)"
    return f"the request failed ({type(exc).__name__})"


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


def _a(value: Any) -> str:
    """What a JSON value is, in words: ``a list``, ``a string``, ``null``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


_TEXT: Final = (str, type(None))
_FLAG: Final = (bool, type(None))
_RUN_FIELDS: Final[dict[str, tuple[type, ...]]] = {
    "run_id": (str,),
    "status": (str,),
    "workflow_id": _TEXT,
    "definition_sha256": _TEXT,
    "project": _TEXT,
    "dry_run": _FLAG,
}
_INPUT_FIELDS: Final[dict[str, tuple[type, ...]]] = {
    "text": _TEXT,
    "sha256": _TEXT,
    "problem": _TEXT,
    "tampered": _FLAG,
}
_NODE_FIELDS: Final[dict[str, tuple[type, ...]]] = {
    "node_id": (str,),
    "status": (str,),
    "effect": _FLAG,
    "idempotency_key": _TEXT,
    "simulated": _FLAG,
    "node_sha256": _TEXT,
    "output": _TEXT,
    "output_sha256": _TEXT,
    "problem": _TEXT,
    "tampered": _FLAG,
}
_REQUIRED: Final = frozenset({"run_id", "status", "node_id"})
"""Fields the evidence must have; the others may be left out (an older receiver's answer), read as null."""


def _fields_problem(value: Mapping[str, Any], where: str, fields: Mapping[str, tuple[type, ...]]) -> str | None:
    for name, types in fields.items():
        if name not in value:
            if name in _REQUIRED:
                return f"`{where}.{name}` is missing"
        elif not isinstance(value[name], types):
            return f"`{where}.{name}` is {_a(value[name])}"
    return None


def _evidence_problem(evidence: Any) -> str | None:
    """What makes ``evidence`` not the receiver's resume evidence (where, and what is wrong), or None."""
    if not isinstance(evidence, Mapping):
        return f"it is {_a(evidence)}, not an object"
    run, nodes = evidence.get("run"), evidence.get("nodes")
    if not isinstance(run, Mapping):
        return f"`run` is {'missing' if 'run' not in evidence else _a(run)}, not an object"
    problem = _fields_problem(run, "run", _RUN_FIELDS)
    if problem is not None:
        return problem
    if run["status"] not in set(RunStatus):
        return f"`run.status` {run['status']!r} is not a run status"
    trigger = run.get("input")
    if trigger is not None:
        if not isinstance(trigger, Mapping):
            return f"`run.input` is {_a(trigger)}, not an object"
        problem = _fields_problem(trigger, "run.input", _INPUT_FIELDS)
        if problem is not None:
            return problem
        if trigger.get("text") is not None and trigger.get("sha256") is None:
            return "`run.input` holds the trigger data without its hash"
    if not isinstance(nodes, list):
        return f"`nodes` is {'missing' if 'nodes' not in evidence else _a(nodes)}, not a list"
    for index, node in enumerate(nodes):
        where = f"nodes[{index}]"
        if not isinstance(node, Mapping):
            return f"`{where}` is {_a(node)}, not an object"
        problem = _fields_problem(node, where, _NODE_FIELDS)
        if problem is not None:
            return problem
        whole = node["status"] == NodeStatus.SUCCEEDED.value and not node.get("problem") and not node.get("tampered")
        if whole and (node.get("output") is None or node.get("output_sha256") is None):
            return (
                f"`{where}` (node `{node['node_id']}`) succeeded without its output, its hash or a problem saying why"
            )
        if node.get("effect") and whole and node.get("idempotency_key") is None:
            return f"`{where}` (node `{node['node_id']}`) is an effect that succeeded without its idempotency key"
    return None


def _verified_text(run_id: str, what: str, text: str, digest: Any) -> Any:
    if hashlib.sha256(text.encode("utf-8")).hexdigest() != digest:
        raise ResumeRefused(
            f"cannot resume run {run_id}: the recorded output of {what} does not match its hash in the ledger"
        )
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise ResumeRefused(f"cannot resume run {run_id}: {NOT_EVIDENCE}: the recorded {what} is not JSON") from None


def _canonical(value: Any) -> str | None:
    """``value``'s canonical JSON (sorted keys, no spaces), or None when it has no JSON form."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return None


def _status_refusal(run_id: str, status: RunStatus) -> str | None:
    """Why a run in ``status`` is not resumed, or None when it may be.

    A run that is still ``running`` is not: its process is doing the same nodes, and its effects would be done
    twice. A ``stuck`` run is: the receiver marks a run stuck when it has heard nothing of it for longer than its
    heartbeats allow, which is what a run whose process died looks like, and resuming such a run is what resuming
    is for (the plan says to stop the process first if it is still alive). A run that succeeded is decided later,
    on the plan (:func:`plan_resume`).
    """
    if status is RunStatus.RUNNING:
        return (
            f"cannot resume run {run_id}: it is still running (status {status.value}), and a resume now would run "
            "its nodes and effects a second time; wait until it ends, or until the receiver marks it stuck"
        )
    return None


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

    ``payload`` (with ``has_payload``) replaces the run's recorded trigger data: when it differs from it (or the
    recorded one is not available), the nodes that read it run again, and so everything below them. Raises
    ResumeRefused when ``evidence`` is not the receiver's resume evidence, when something recorded was changed,
    when the run is of another workflow, still running, or succeeded with nothing to run again.
    """
    shape = _evidence_problem(evidence)
    if shape is not None:
        run_id = evidence.get("run", {}).get("run_id") if isinstance(evidence, Mapping) else None
        named = f"run {run_id}" if isinstance(run_id, str) else "the run"
        raise ResumeRefused(f"cannot resume {named}: {NOT_EVIDENCE}: {shape}")
    run = evidence["run"]
    run_id = str(run["run_id"])
    if run.get("workflow_id") != workflow.id:
        raise ResumeRefused(f"run {run_id} is a run of workflow {run.get('workflow_id')!r}, not of {workflow.id!r}")
    status = RunStatus(run["status"])
    refusal = _status_refusal(run_id, status)
    if refusal is not None:
        raise ResumeRefused(refusal)
    if from_node is not None and from_node not in {n.id for n in workflow.nodes}:
        known = ", ".join(n.id for n in workflow.nodes)
        raise ResumeRefused(f"--from {from_node}: the workflow has no such node (its nodes: {known})")
    recorded = {str(n["node_id"]): n for n in evidence["nodes"]}
    trigger = run.get("input") or {}
    tampered = [node_id for node_id, n in recorded.items() if n.get("tampered")]
    if tampered or trigger.get("tampered"):
        what = tampered[0] if tampered else "the run's trigger data"
        problem = recorded[what].get("problem") if tampered else trigger.get("problem")
        raise ResumeRefused(f"cannot resume run {run_id}: node `{what}`: {problem}")
    recorded_payload: Any = None
    if trigger.get("text") is not None:
        recorded_payload = _verified_text(run_id, "the run's trigger data", trigger["text"], trigger["sha256"])
    new_payload = has_payload and (
        trigger.get("text") is None
        or _canonical(payload) is None
        or _canonical(payload) != _canonical(recorded_payload)
    )
    same_definition = run.get("definition_sha256") == workflow.definition_sha256
    forced = _below(workflow, from_node) if from_node is not None else set()
    roots = {n.id for n in workflow.nodes if not n.needs}
    dry_run = bool(run.get("dry_run"))
    reuse: dict[str, Any] = {}
    rerun: dict[str, str] = {}
    for node in _order(workflow):
        before = recorded.get(node.id)
        why: str | None = None
        if before is None:
            why = "it is new in this definition" if not same_definition else "it did not run"
        elif node.id in forced:
            why = f"--from {from_node}"
        elif new_payload and node.id in roots:
            why = "the trigger data differs from the run's"
        elif before["status"] != NodeStatus.SUCCEEDED.value:
            done = before["status"] in (NodeStatus.FAILED.value, NodeStatus.SKIPPED.value)
            why = f"it {before['status']}" if done else "it did not finish"
        elif _simulated(before, dry_run):
            why = "it was only simulated (a dry run's effect)"
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
    if status is RunStatus.SUCCEEDED and not rerun:
        raise ResumeRefused(
            f"cannot resume run {run_id}: it succeeded, and a resume would reuse every node's output and run nothing; "
            "to run a node and those below it again, name it with --from NODE"
        )
    effects = {
        node_id: RecordedEffect(
            idempotency_key=str(n["idempotency_key"]),
            available=n.get("output") is not None and not n.get("problem"),
            output=_verified_text(run_id, f"node `{node_id}`", n["output"], n["output_sha256"])
            if n.get("output") is not None and not n.get("problem")
            else None,
        )
        for node_id, n in recorded.items()
        if n.get("effect")
        and n.get("idempotency_key")
        and n["status"] == NodeStatus.SUCCEEDED.value
        and not _simulated(n, dry_run)
    }
    if not has_payload:
        roots_rerun = [n.id for n in workflow.nodes if not n.needs and n.id in rerun]
        if trigger.get("text") is not None:
            payload = recorded_payload
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
        status=status,
    )


def _simulated(node: Mapping[str, Any], dry_run: bool) -> bool:
    """Whether a recorded effect was only simulated: flagged so, or any effect of a dry run."""
    return bool(node.get("effect") and (node.get("simulated") or dry_run))
