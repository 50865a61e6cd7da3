"""LangGraph: a graph invocation becomes a run and each node a node attempt, through LangChain callbacks.

One line turns it on (``pip install 'flowledger[langgraph]'``)::

    from flowledger.adapters.langgraph import instrument

    app = instrument(graph.compile())          # or config={"callbacks": [callbacks()]}
    app.invoke({"x": 1})

The handler is a LangChain ``BaseCallbackHandler``, the extension point
LangGraph calls for every runnable; nothing is patched. The outermost
invocation is the run (its input the run's data, its output the run's
output); each node LangGraph runs is a node attempt, numbered by the
attempts of its task (LangGraph's ``RetryPolicy``), running concurrently as
LangGraph runs them; a subgraph's nodes nest under the node that runs it.
Token usage that a chat model reports (a message's ``usage_metadata``, or
``llm_output``) is added to the cost of the node that called it. A graph invoked inside a flowledger run, or
inside a node attempt, is a node of that run rather than a run of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.runnables import RunnableBinding

from flowledger._wire import AbortReason
from flowledger.adapters._base import Cost, Recorder
from flowledger.instrument import current_run

if TYPE_CHECKING:
    from langchain_core.outputs import LLMResult
    from langchain_core.runnables import Runnable, RunnableConfig

__all__ = ["FlowledgerCallbackHandler", "callbacks", "instrument"]

_In = TypeVar("_In")
_Out = TypeVar("_Out")

_NODE_KEY: Final = "langgraph_node"
_NAMESPACE_KEY: Final = "langgraph_checkpoint_ns"
_RUN_NAME: Final = "LangGraph"
_STOPPED_READING: Final = "the caller stopped reading the graph's stream before it ended"
"""The message of a run aborted because its stream was closed early (``break`` out of ``stream()``)."""
_CLOSED_EARLY: Final = "langgraph.closed_early"
"""Set on the node a graph invoked inside a flowledger run is, when its stream was closed early."""

_in_scope: contextvars.ContextVar[bool] = contextvars.ContextVar("flowledger_langgraph_scope", default=False)
"""True inside an async invocation of an ``instrument``-ed graph, which undoes what its nodes left current."""


class FlowledgerCallbackHandler(BaseCallbackHandler):
    """Records LangGraph invocations and their nodes; one handler serves many invocations, in threads.

    ``workflow_id`` names the runs (default: the graph's name, ``LangGraph``
    unless the graph was given one with ``.with_config(run_name=...)``).
    """

    raise_error = False  # a recording problem never fails the graph
    run_inline = True  # called where the node runs, so its start and end stay in order

    def __init__(self, *, workflow_id: str | None = None) -> None:
        super().__init__()
        self.workflow_id = workflow_id
        self.recorder = Recorder()
        self._lock = threading.Lock()
        self._parents: dict[UUID, UUID | None] = {}  # every chain's parent, to find the attempt above it
        self._recorded: dict[UUID, UUID] = {}  # recorded chain -> its root (the run's key)
        self._attempts: dict[tuple[UUID, str], int] = {}  # (root, task namespace) -> attempts so far

    # --- chains: the graph and its nodes ----------------------------------------

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: dict[str, Any] | Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        name = str(kwargs.get("name") or (serialized or {}).get("name") or _RUN_NAME)
        metadata = metadata or {}
        with self._lock:
            self._parents[run_id] = parent_run_id
            recorded_above = self._recorded_ancestor(parent_run_id)
        if recorded_above is None and parent_run_id is None:
            self._start_root(run_id, name, inputs)
            return
        node = metadata.get(_NODE_KEY)
        if recorded_above is None or node != name:
            return  # LangGraph's own plumbing (edges, writes) or a chain outside any graph we record
        root = self._recorded[recorded_above]
        namespace = str(metadata.get(_NAMESPACE_KEY) or node)
        with self._lock:
            attempt = self._attempts[(root, namespace)] = self._attempts.get((root, namespace), 0) + 1
            self._recorded[run_id] = root
        in_run = recorded_above == root and self.recorder.run_of(root) is not None
        in_task = _in_task()
        self.recorder.node_started(
            run_id,
            node,
            run_key=root if in_run else None,
            parent_key=None if in_run else recorded_above,
            input=inputs,
            attempt=attempt,
            attributes={"langgraph.step": metadata.get("langgraph_step"), "langgraph.namespace": namespace},
            # Sync: LangGraph calls a node's callbacks in the node's own context, so the attempt is made current
            # there (flowledger.cost() in the node is its cost) and undone there.
            current=not in_task,
        )
        if in_task and _in_scope.get():
            # Async: on_chain_start runs in the task that runs the node (the caller's, for a node alone in its
            # step), which then runs the node's code in a task with a copy of its context; on_chain_end runs in
            # yet another copy (LangChain shields it). Made current here, the attempt is current in the node's
            # code; the next node started here, or the end of the invocation (instrument), undoes it here.
            self.recorder.node_current(run_id)

    def on_chain_end(self, outputs: dict[str, Any] | Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, outputs, None)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, None, error)

    # --- models: their token usage is the calling node's cost ---------------------

    def on_llm_end(
        self, response: LLMResult, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        cost = _token_cost(response)
        if cost is None:
            return
        with self._lock:
            holder = self._recorded_ancestor(parent_run_id)
        if holder is not None:
            self.recorder.node_cost(holder, cost)

    # --- internals -----------------------------------------------------------------

    def _start_root(self, run_id: UUID, name: str, inputs: Any) -> None:
        with self._lock:
            self._recorded[run_id] = run_id
        if current_run() is not None:  # inside a flowledger run: the graph is a node of it
            self.recorder.node_started(run_id, self.workflow_id or name, input=inputs)
            return
        self.recorder.run_started(run_id, self.workflow_id or name, name=name, data=inputs)

    def _recorded_ancestor(self, run_id: UUID | None) -> UUID | None:
        """The nearest chain at or above ``run_id`` that was recorded (call with the lock held)."""
        seen = 0
        while run_id is not None and seen < 256:
            if run_id in self._recorded:
                return run_id
            run_id = self._parents.get(run_id)
            seen += 1
        return None

    def _end(self, run_id: UUID, outputs: Any, error: BaseException | None) -> None:
        """End the chain ``run_id``'s attempt or run. A graph whose stream the caller closed early did not fail:
        its run ends aborted (the caller stopped reading); as a node of a flowledger run, it succeeded, marked as
        a generator node closed early is."""
        with self._lock:
            self._parents.pop(run_id, None)
            root = self._recorded.pop(run_id, None)
            if root == run_id:
                for key in [k for k in self._attempts if k[0] == run_id]:
                    del self._attempts[key]
        if root is None:
            return
        closed_early = root == run_id and isinstance(error, GeneratorExit)
        attempt = self.recorder.node_of(run_id)
        if attempt is not None:
            if closed_early:
                attempt.set_attribute(_CLOSED_EARLY, True)
                self.recorder.node_finished(run_id)
            else:
                self.recorder.node_finished(run_id, output=outputs, error=error)
            return
        run = self.recorder.run_of(run_id)
        if run is not None and closed_early:
            run.abort(AbortReason.INTERRUPTED, _STOPPED_READING)
            self.recorder.run_finished(run_id)
        else:
            self.recorder.run_finished(run_id, output=outputs, error=error)


def _in_task() -> bool:
    """True when called from an asyncio task (an async invocation's callbacks)."""
    try:
        return asyncio.current_task() is not None
    except RuntimeError:  # no event loop runs in this thread
        return False


def _count(usage: Mapping[str, Any], *names: str) -> int:
    for name in names:
        value = usage.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return 0


def _token_cost(response: LLMResult) -> Cost | None:
    """The tokens a model call reports, input and output apart where it says: each message's ``usage_metadata``,
    else ``llm_output``'s token usage. Tokens of the total that are neither input nor output count as ``tokens``."""
    usages = [
        usage
        for generations in response.generations
        for generation in generations
        if isinstance(usage := getattr(getattr(generation, "message", None), "usage_metadata", None), Mapping)
        and _count(usage, "total_tokens")
    ]
    if not usages:
        output = response.llm_output or {}
        usage = output.get("token_usage") or output.get("usage")
        usages = [usage] if isinstance(usage, Mapping) and _count(usage, "total_tokens") else []
    tokens_in = sum(_count(u, "input_tokens", "prompt_tokens") for u in usages)
    tokens_out = sum(_count(u, "output_tokens", "completion_tokens") for u in usages)
    total = sum(_count(u, "total_tokens") for u in usages)
    if total <= 0:
        return None
    return Cost(tokens_in=tokens_in, tokens_out=tokens_out, tokens=max(total - tokens_in - tokens_out, 0))


def callbacks(*, workflow_id: str | None = None) -> FlowledgerCallbackHandler:
    """A callback handler to pass in a graph's config: ``config={"callbacks": [callbacks()]}``."""
    return FlowledgerCallbackHandler(workflow_id=workflow_id)


class _Instrumented(RunnableBinding[_In, _Out]):
    """A graph bound to a handler; its async invocations make each node's attempt current in the node's code."""

    async def ainvoke(self, input: _In, config: RunnableConfig | None = None, **kwargs: Any | None) -> _Out:
        token = _in_scope.set(True)
        try:
            return await super().ainvoke(input, config, **kwargs)
        finally:
            _leave_scope(token)

    async def astream(
        self, input: _In, config: RunnableConfig | None = None, **kwargs: Any | None
    ) -> AsyncIterator[_Out]:
        token = _in_scope.set(True)
        try:
            async with contextlib.aclosing(super().astream(input, config, **kwargs)) as chunks:  # type: ignore[type-var]
                async for chunk in chunks:
                    yield chunk
        finally:
            _leave_scope(token)


def _leave_scope(token: contextvars.Token[bool]) -> None:
    """Undo what the invocation left current in the caller's context (a node alone in its step starts there)."""
    Recorder.release_current()
    with contextlib.suppress(ValueError):  # a stream closed from another context: that one was never changed
        _in_scope.reset(token)


def instrument(graph: Runnable[_In, _Out], *, workflow_id: str | None = None) -> Runnable[_In, _Out]:
    """``graph`` with the handler in its config: every invocation of the result is recorded."""
    return _Instrumented(bound=graph, config={"callbacks": [callbacks(workflow_id=workflow_id)]})
