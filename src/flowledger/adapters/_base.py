"""The adapter interface: a runtime's own ids in, flowledger runs and node attempts out.

A runtime tells its extension points (hooks, callbacks, signals) about its
runs and tasks by its own ids: a flow run id, a callback's ``run_id``, a
Celery task id. :class:`Recorder` keeps, per such key, the
:class:`~flowledger.instrument.Run` or
:class:`~flowledger.instrument.NodeAttempt` it started, so that an adapter
is a handful of one-line translations::

    recorder = Recorder()
    recorder.run_started(flow_run_id, "etl", data=params)       # the runtime's "run starts"
    recorder.node_started(task_id, "load", run_key=flow_run_id, input=args)
    recorder.node_finished(task_id, output=value)                # or error=exc, cost=Cost(tokens_in=9)
    recorder.run_finished(flow_run_id, error=None)

Nothing here raises into the runtime: a key that is not known is ignored,
and a failure to record is counted by the SDK, as every hook's is. Runs and
attempts are started with ``current=False`` unless asked otherwise, since a
runtime's callbacks seldom run in the context of the work they report on.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace

from flowledger._exceptions import RunAborted, UsageError
from flowledger._wire import TriggerType
from flowledger.instrument import Cost, NodeAttempt, Run, record_skip
from flowledger.instrument._node import _current_node
from flowledger.instrument._otel import context_from_traceparent
from flowledger.instrument._pipeline import pipeline
from flowledger.instrument._run import MAX_ID_CHARS, MAX_NAME_CHARS, _current_run

__all__ = ["UNSET", "Cost", "Recorder"]


def _fitted(text: str, max_chars: int) -> str:
    """A name a runtime gave, within what the wire format takes: cut to ``max_chars``, ``"unnamed"`` when empty.

    ``Run`` and ``@flowledger.node`` refuse such a name from user code (a ``ConfigError`` at the call); a runtime's
    task or graph name is not the user's argument to fix, and telemetry never raises into its host.
    """
    text = str(text)
    return text[:max_chars] if text else "unnamed"


def _run_of_runtime(workflow_id: str, *, name: str | None, run_id: str | None, **given: Any) -> Run:
    """The run a runtime reports, its names fitted (:func:`_fitted`); a run id the wire format does not take (not
    a UUID) is reported once as an SDK error and the run gets an id of its own."""
    fitted_id = _fitted(workflow_id, MAX_ID_CHARS)
    fitted_name = None if name is None else str(name)[:MAX_NAME_CHARS]
    try:
        return Run(fitted_id, name=fitted_name, run_id=run_id, **given)
    except UsageError as exc:
        pipeline().internal_error("adapter_run", exc)
        return Run(fitted_id, name=fitted_name, **given)


class _Unset:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()
"""The default of ``output=``: no output was reported (distinct from an output of None)."""


@dataclass(frozen=True, slots=True)
class _Current:
    """What :meth:`Recorder.node_current` set in one context, to be undone there."""

    own: contextvars.Token[_Current | None]
    run: contextvars.Token[Run | None]
    node: contextvars.Token[NodeAttempt | None]
    otel: object

    def undo(self) -> bool:
        """Restore the context from before, when called in the context that set it; False elsewhere."""
        try:
            _made_current.reset(self.own)  # raises in any other context (a copy included): nothing else is touched
        except (ValueError, RuntimeError):
            return False
        otel_context.detach(self.otel)  # type: ignore[arg-type]
        _current_node.reset(self.node)
        _current_run.reset(self.run)
        return True


_made_current: contextvars.ContextVar[_Current | None] = contextvars.ContextVar(
    "flowledger_adapter_current", default=None
)


class Recorder:
    """Runs and node attempts of one runtime, kept by the runtime's own keys; thread-safe.

    ``current`` is how runs and attempts start: ``False`` (the default) leaves
    the calling context alone; ``True`` makes each the current run or node
    of the context that calls ``*_started``, for runtimes whose start and
    end callbacks run in the context of the work itself (then
    ``flowledger.cost()`` and ``@flowledger.node`` inside the work attach
    to it).
    """

    def __init__(self, *, current: bool = False) -> None:
        self.current = current
        self._lock = threading.Lock()
        self._runs: dict[Hashable, Run] = {}
        self._nodes: dict[Hashable, NodeAttempt] = {}

    # --- runs ------------------------------------------------------------------

    def run_started(
        self,
        key: Hashable,
        workflow_id: str,
        *,
        name: str | None = None,
        data: Any = None,
        trigger: TriggerType | str = TriggerType.MANUAL,
        attributes: Mapping[str, Any] | None = None,
        traceparent: str | None = None,
        run_id: str | None = None,
    ) -> Run:
        """Start recording a run the runtime knows as ``key``; returns it (a run already started is returned as is).

        ``run_id`` adopts the runtime's own id (a UUID) as the run's id.
        """
        with self._lock:
            known = self._runs.get(key)
            if known is not None:
                return known
            run = self._runs[key] = _run_of_runtime(
                workflow_id,
                name=name,
                data=data,
                trigger=trigger,
                attributes=attributes,
                traceparent=traceparent,
                run_id=run_id,
            )
        return run.start(current=self.current)

    def run_continued(self, key: Hashable, run_id: str, *, workflow_id: str, traceparent: str | None) -> Run:
        """Record the part of run ``run_id`` (started in another process) that the runtime runs here as ``key``."""
        with self._lock:
            known = self._runs.get(key)
            if known is not None:
                return known
            run = self._runs[key] = Run.continued(run_id, workflow_id=workflow_id, traceparent=traceparent)
        return run.start(current=self.current)

    def run_finished(self, key: Hashable, *, output: Any = UNSET, error: BaseException | None = None) -> None:
        """Finish the run ``key``: failed with ``error``, or succeeded with ``output``; an unknown key is ignored."""
        with self._lock:
            run = self._runs.pop(key, None)
        if run is None:
            return
        if output is not UNSET:
            run.set_output(output)
        run.end(error)

    def run_of(self, key: Hashable) -> Run | None:
        """The run started as ``key``, if it is still running."""
        with self._lock:
            return self._runs.get(key)

    # --- node attempts ---------------------------------------------------------

    def node_started(
        self,
        key: Hashable,
        node_id: str,
        *,
        run_key: Hashable | None = None,
        parent_key: Hashable | None = None,
        input: Any = None,
        attempt: int = 1,
        attributes: Mapping[str, Any] | None = None,
        current: bool | None = None,
    ) -> NodeAttempt | None:
        """Start an attempt of ``node_id`` that the runtime knows as ``key``.

        Its run is the run ``run_key``; else the run of the attempt
        ``parent_key`` (the attempt is then nested under that one); else the
        current run; else it records itself as a run of its own. A key still
        running is ended as succeeded first (a runtime that reuses a key for
        its next attempt should report the end). Returns None when its run
        passed its deadline or budget (the attempt is then not recorded).
        ``current`` overrides the recorder's ``current`` for this attempt.
        """
        with self._lock:
            parent = self._nodes.get(parent_key) if parent_key is not None else None
            run = self._runs.get(run_key) if run_key is not None else None
        if run is None and parent is not None:
            run = parent.run
        node_attempt = NodeAttempt(
            _fitted(node_id, MAX_ID_CHARS),
            input=input,
            attempt=attempt,
            attributes=attributes,
            run=run,
            parent=parent.trace_context() if parent is not None else None,
        )
        try:
            node_attempt.start(current=self.current if current is None else current)
        except RunAborted as exc:
            if run is not None:
                run.abort(exc.reason, str(exc))
            return None
        with self._lock:
            previous = self._nodes.get(key)
            self._nodes[key] = node_attempt
        if previous is not None:
            previous.end(None)
        return node_attempt

    def node_finished(
        self,
        key: Hashable,
        *,
        output: Any = UNSET,
        error: BaseException | None = None,
        cost: Cost | None = None,
    ) -> None:
        """End the attempt ``key``: failed with ``error``, or succeeded with ``output``; adds ``cost``."""
        with self._lock:
            node_attempt = self._nodes.pop(key, None)
        if node_attempt is None:
            return
        try:
            if cost is not None:
                node_attempt.add_cost(cost)
            if output is not UNSET and error is None:
                node_attempt.set_output(output)
        except Exception as exc:  # a bad cost, an output that cannot be captured: the end is still recorded
            pipeline().internal_error("adapter_node_finish", exc)
        node_attempt.end(error)

    def node_cost(self, key: Hashable, cost: Cost) -> None:
        """Add ``cost`` to the running attempt ``key`` (and its run), e.g. from a model callback."""
        with self._lock:
            node_attempt = self._nodes.get(key)
        if node_attempt is None:
            return
        try:
            node_attempt.add_cost(cost)
        except Exception as exc:
            pipeline().internal_error("adapter_cost", exc)

    def node_current(self, key: Hashable) -> None:
        """Make the running attempt ``key`` the current node (its span the current OTel span) of the calling context.

        For runtimes that start a node in one context, run its work in copies
        of that context (asyncio tasks) and end it in yet another: start the
        attempt with ``current=False``, then call this where the work's
        context is copied from. The attempt stays current here until the next
        ``node_current`` in this context, or :meth:`release_current` called
        here; ending the attempt elsewhere leaves this context alone.
        """
        node_attempt = self.node_of(key)
        run = node_attempt.run if node_attempt is not None else None
        traceparent = node_attempt.trace_context() if node_attempt is not None else None
        if node_attempt is None or run is None or traceparent is None:
            return
        self.release_current()
        try:
            span = trace.get_current_span(context_from_traceparent(traceparent))
            run_token = _current_run.set(run)
            node_token = _current_node.set(node_attempt)
            otel_token = otel_context.attach(trace.set_span_in_context(span))
            own = _made_current.set(None)  # its token restores the value from before, whatever is set after it
            _made_current.set(_Current(own, run_token, node_token, otel_token))
        except Exception as exc:
            pipeline().internal_error("adapter_current", exc)

    @staticmethod
    def release_current() -> None:
        """Undo :meth:`node_current` in the calling context (nothing when it was called in another context)."""
        made = _made_current.get()
        if made is None:
            return
        try:
            made.undo()
        except Exception as exc:
            pipeline().internal_error("adapter_current", exc)

    def node_of(self, key: Hashable) -> NodeAttempt | None:
        """The attempt started as ``key``, if it is still running."""
        with self._lock:
            return self._nodes.get(key)

    def node_skipped(self, run_key: Hashable, node_id: str, reason: str) -> None:
        """Record that the run ``run_key`` skipped ``node_id``, and why."""
        run = self.run_of(run_key)
        if run is not None:
            record_skip(node_id, reason, run=run)
