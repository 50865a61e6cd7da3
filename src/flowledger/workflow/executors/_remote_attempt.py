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
from typing import Any

from flowledger._exceptions import NodeTimeout, RemoteNodeError, RunAborted
from flowledger.instrument import Cost, Run, continue_run, run_context
from flowledger.workflow._attempts import one_attempt
from flowledger.workflow._host import NodeHost
from flowledger.workflow._spec import Node, Workflow
from flowledger.workflow.executors._node_json import node_from_json, node_to_json

__all__ = ["AnswerKind", "apply_answer", "attempt_request", "new_span_id", "run_requested_attempt"]


class AnswerKind(enum.StrEnum):
    """How an attempt ended on the worker."""

    OK = "ok"
    ERROR = "error"
    TIMEOUT = "timeout"
    ABORTED = "aborted"


def new_span_id() -> str:
    """A fresh span id for an attempt (16 hex digits), chosen by the scheduler."""
    return f"{random.getrandbits(64) or 1:016x}"


def attempt_request(
    host: NodeHost, node: Node, value: Any, number: int, item: int | None, span_id: str
) -> dict[str, Any]:
    """The JSON a worker needs to run attempt ``number`` of ``node`` for ``host``'s run."""
    return {
        "node": node_to_json(node, host.workflow.locations[node.id]),
        "workflow_id": host.workflow.id,
        "value": value,
        "attempt": number,
        "item": item,
        "span_id": span_id,
        "dry_run": host.dry_run,
        "run": run_context(host.run),
    }


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
        host = NodeHost(workflow, recorder, dry_run=bool(request.get("dry_run")))
        try:
            output = _loop().run_until_complete(_attempt(host, node, request))
            answer: dict[str, Any] = {"kind": AnswerKind.OK, "output": output}
        except RunAborted as exc:
            answer = {"kind": AnswerKind.ABORTED, "type": "RunAborted", "reason": exc.reason, "message": str(exc)}
        except NodeTimeout as exc:
            answer = {"kind": AnswerKind.TIMEOUT, "type": "NodeTimeout", "message": str(exc)}
        except BaseException as exc:  # the node's own error, reported by name (the record here has its stack)
            answer = {"kind": AnswerKind.ERROR, "type": type(exc).__name__, "message": str(exc)}
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
