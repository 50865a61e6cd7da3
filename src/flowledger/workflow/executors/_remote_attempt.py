"""One node attempt on a worker: the request a scheduler sends, and the answer it gets back.

Engine-agnostic: a distributed executor carries :func:`attempt_request`'s
JSON to a worker, which calls :func:`run_requested_attempt` and sends the
JSON answer back. The worker continues the run (``continue_run``: same run
id, under the run's span) and records the attempt itself (its sinks
deliver the records in the background, as in any process), with the span id
the scheduler chose, so that the scheduler can complete the record should
the worker die mid-attempt. The answer carries the output, or the error as
a type name and message (``timeout``, ``aborted`` with its reason, or
``error``), and the cost the attempt reported, which the scheduler adds to
the run (its budget).
"""

from __future__ import annotations

import asyncio
import enum
import random
from dataclasses import replace
from typing import Any, Final

from flowledger._exceptions import NodeTimeout, RemoteNodeError, RunAborted
from flowledger.instrument import Cost, NodeAttempt, Run, continue_run, run_context
from flowledger.workflow._attempts import one_attempt
from flowledger.workflow._host import NodeHost
from flowledger.workflow._resume import RecordedEffect
from flowledger.workflow._spec import Node, Workflow
from flowledger.workflow.executors._node_json import node_from_json, node_to_json, not_json

__all__ = ["AnswerKind", "apply_answer", "attempt_request", "new_span_id", "run_requested_attempt"]

_RECORDED_EFFECT: Final = "recorded_effect"


class AnswerKind(enum.StrEnum):
    """How an attempt ended on the worker."""

    OK = "ok"
    ERROR = "error"
    TIMEOUT = "timeout"
    ABORTED = "aborted"
    NOT_JSON = "not_json"
    """The node ran and returned a value that is not JSON (recorded failed on the worker)."""


class _WorkerHost(NodeHost):
    """A worker's host: the node's output must cross back as JSON, so one that cannot fails the attempt here,
    inside its record (which then says ``failed``, not ``succeeded``)."""

    output_not_json = False
    """True once the node returned a value that is not JSON (it ran: an effect did its work)."""

    async def invoke(self, node: Node, value: Any, hook: NodeAttempt) -> Any:
        output = await super().invoke(node, value, hook)
        why = not_json(output)
        if why is not None:
            self.output_not_json = True
            raise TypeError(
                f"node `{node.id}` output is not JSON ({why}): a node run by a distributed executor must return "
                "JSON values (dicts with string keys, lists, strings, numbers, booleans, None)"
            )
        return output


def new_span_id() -> str:
    """A fresh span id for an attempt (16 hex digits), chosen by the scheduler."""
    return f"{random.getrandbits(64) or 1:016x}"


def attempt_request(
    host: NodeHost, node: Node, value: Any, number: int, item: int | None, span_id: str
) -> dict[str, Any]:
    """The JSON a worker needs to run attempt ``number`` of ``node`` for ``host``'s run.

    A resume sends along the effect the resumed run recorded for ``node`` (its key, and its output when the
    record holds it whole), so that the worker's effect guard sees what the scheduler's would.
    """
    request = {
        "node": node_to_json(node, host.workflow.locations[node.id]),
        "workflow_id": host.workflow.id,
        "value": value,
        "attempt": number,
        "item": item,
        "span_id": span_id,
        "dry_run": host.dry_run,
        "run": run_context(host.run),
    }
    recorded = host.recorded_effects.get(node.id) if node.effect else None
    if recorded is not None:
        request[_RECORDED_EFFECT] = {
            "idempotency_key": recorded.idempotency_key,
            "available": recorded.available,
            "output": recorded.output,
        }
    return request


def _recorded_effects(node: Node, request: dict[str, Any]) -> dict[str, RecordedEffect]:
    """The resumed run's effect for ``node`` that the scheduler sent (none when it sent none)."""
    recorded = request.get(_RECORDED_EFFECT)
    if not isinstance(recorded, dict) or not isinstance(recorded.get("idempotency_key"), str):
        return {}
    effect = RecordedEffect(
        idempotency_key=recorded["idempotency_key"],
        available=bool(recorded.get("available")),
        output=recorded.get("output"),
    )
    return {node.id: effect}


def run_requested_attempt(request: dict[str, Any]) -> dict[str, Any]:
    """Run the attempt a scheduler requested, here, recorded here; return the JSON answer. Never raises."""
    try:
        node, location = node_from_json(request["node"])
        workflow = Workflow(id=str(request["workflow_id"]), nodes=(replace(node, needs=()),), output=node.id)
        object.__setattr__(workflow, "locations", {node.id: location})
    except (KeyError, ValueError, TypeError) as exc:
        return {"kind": AnswerKind.ERROR, "type": type(exc).__name__, "message": f"a bad attempt request: {exc}"}
    with continue_run(request.get("run")) as run:
        recorder = run if run is not None else Run(workflow.id)
        host = _WorkerHost(workflow, recorder, dry_run=bool(request.get("dry_run")))
        host.recorded_effects = _recorded_effects(node, request)
        try:
            output = _loop().run_until_complete(_attempt(host, node, request))
            answer: dict[str, Any] = {"kind": AnswerKind.OK, "output": output}
        except RunAborted as exc:
            answer = {"kind": AnswerKind.ABORTED, "type": "RunAborted", "reason": exc.reason, "message": str(exc)}
        except NodeTimeout as exc:
            answer = {"kind": AnswerKind.TIMEOUT, "type": "NodeTimeout", "message": str(exc)}
        except BaseException as exc:  # the node's own error, reported by name (the record here has its stack)
            kind = AnswerKind.NOT_JSON if host.output_not_json else AnswerKind.ERROR
            answer = {"kind": kind, "type": type(exc).__name__, "message": str(exc)}
        answer["cost"] = recorder.cost.as_dict()
    return answer


_worker_loop: asyncio.AbstractEventLoop | None = None


def _loop() -> asyncio.AbstractEventLoop:
    """This worker process's event loop, made once (a new loop per attempt costs about a millisecond)."""
    global _worker_loop
    if _worker_loop is None or _worker_loop.is_closed():
        _worker_loop = asyncio.new_event_loop()
    return _worker_loop


async def _attempt(host: NodeHost, node: Node, request: dict[str, Any]) -> Any:
    try:
        return await one_attempt(
            host, node, request.get("value"), int(request["attempt"]), request.get("item"), span_id=request["span_id"]
        )
    finally:
        await host.close()


def apply_answer(host: NodeHost, node: Node, answer: dict[str, Any]) -> Any:
    """The attempt's output, or its error raised again here; its cost is added to the run first."""
    cost = answer.get("cost")
    if isinstance(cost, dict):
        try:
            host.run.cost.merge(Cost.from_dict(cost))
        except (TypeError, ValueError):
            pass
    kind = answer.get("kind")
    message = str(answer.get("message", ""))
    if kind == AnswerKind.OK:
        return answer.get("output")
    if kind == AnswerKind.ABORTED:
        host.run.abort(str(answer.get("reason", "deadline")), message)
        host.run.check_limits()
        raise RunAborted(str(answer.get("reason", "deadline")), message)
    if kind == AnswerKind.TIMEOUT:
        raise NodeTimeout(message)
    raise RemoteNodeError(f"{answer.get('type', 'Exception')}: {message}", type_name=str(answer.get("type")))
