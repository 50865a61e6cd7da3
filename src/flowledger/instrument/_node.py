"""Node attempts: ``attempt(...)``, skips, cost, metrics, artifacts (``@flowledger.node`` is in ``_decorator``).

A node attempt is recorded as ``node_started`` then ``node_finished``,
sharing one span id: input, output, timing, status, error with stack,
attempt number, and cost. ``node_started`` is sent only once the attempt
has run for ``node_start_delay_s`` (see ``_heartbeat``); a shorter attempt
is told by its ``node_finished`` alone, which then carries the input.
While it runs, the attempt is the current node and its span is the current
OTel span, so nested nodes and auto-instrumented libraries attach under
it. Called outside a run, a node records itself as a run of its own.

Nothing here raises into the user's code except on purpose: a run that
passed its deadline or budget raises ``RunAborted`` when the next node
starts.

An attempt that ends by ``SystemExit`` (its code called ``sys.exit``, even
``sys.exit(0)``) did not return: it is recorded as failed, its error a
``NodeExited`` naming the node and the exit code (its cause the
``SystemExit``, which goes on to end the process as asked). Its run fails
with that error and the node's id, whether the run is the node's own (a
node called outside any run) or a ``with flowledger.run()`` it ends.
"""

from __future__ import annotations

import contextvars
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from reprlib import repr as _q  # quoted, and cut short: a message never carries a whole value
from types import TracebackType
from typing import Any, Final

from flowledger._exceptions import UsageError
from flowledger._wire import CaptureMode, EventKind, NodeStatus, format_ts
from flowledger.instrument import _heartbeat, _pipeline
from flowledger.instrument._artifact import MAX_ARTIFACTS_PER_ATTEMPT, Source, artifact_record
from flowledger.instrument._cost import Charge, Cost, Penalty, cost_parts
from flowledger.instrument._effects import IdempotencyGuard, idempotency_key
from flowledger.instrument._fixed import FixedAttributes
from flowledger.instrument._logs import AttemptLogBuffer, install_handler
from flowledger.instrument._metric import AttemptMetrics, check_metric
from flowledger.instrument._otel import SpanScope, context_from_traceparent, format_traceparent
from flowledger.instrument._pipeline import Pipeline, pipeline
from flowledger.instrument._run import Run, _current_run, current_run, error_record, in_dry_run, node_exited
from flowledger.instrument.capture import CapturePolicy, RawJSON, capture, capture_mode, full_capture

__all__ = [
    "Location",
    "NodeAttempt",
    "artifact",
    "attempt",
    "cost",
    "current_node",
    "metric",
    "node_exited",
    "node_record",
    "record_skip",
]


_SKIP_SIZE: Final = 256
"""Bytes a skip record adds besides its reason (an estimate for the queue's byte bound)."""
_NODE_FINISHED_SIZE: Final = 256
"""Bytes a ``node_finished`` record takes besides its payloads (an estimate)."""


_time_ns: Final = time.time_ns
_perf_counter: Final = time.perf_counter
_current_node: contextvars.ContextVar[NodeAttempt | None] = contextvars.ContextVar("flowledger_node", default=None)


def current_node() -> NodeAttempt | None:
    """The node attempt the calling code is part of, or None.

    An attempt is current only inside its own run: code in a run opened
    within the attempt is not part of the attempt.
    """
    node_attempt = _current_node.get()
    if node_attempt is None or node_attempt.run is None or node_attempt.run is not current_run():
        return None
    return node_attempt


_logs_lock = threading.Lock()


def _current_logs() -> tuple[AttemptLogBuffer, tuple[str, str] | None] | None:
    """The current attempt's log lines and its (trace id, span id), for the root logger's handler."""
    node_attempt = current_node()
    if node_attempt is None:
        return None
    logs = node_attempt._log_buffer()
    if logs is None:
        return None
    span = node_attempt._span
    return logs, (None if span is None else (span.trace_id, span.span_id))


def _error_record(run: Run, error: BaseException) -> dict[str, Any]:
    """``error_record`` with the run's capture limit and redaction."""
    p = run._pipeline
    if p is None:
        return error_record(error)
    return error_record(error, limit_chars=p.policy.limit_bytes, redact=p.policy.redact)


def node_record(
    run: Run,
    node_id: str,
    span: SpanScope | None,
    *,
    attempt: int,
    item: int | None = None,
    location: Location | None = None,
    effect: bool = False,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """The fields every node record (``node_started``, ``node_finished``, a skip) carries.

    The one place that says which node attempt a record is about; a field
    that every node record gains is added here. An effect's record carries
    its idempotency key when it has one (see ``_effects``).
    """
    data: dict[str, Any] = {
        "node_id": node_id,
        "span_id": span.span_id if span is not None else "",
        "parent_span_id": span.parent_span_id if span is not None else None,
        "trace_id": span.trace_id if span is not None else None,
        "attempt": attempt,
    }
    if item is not None:
        data["item"] = item
    if effect or idempotency_key is not None:
        data["effect"] = True
    if idempotency_key is not None:
        data["idempotency_key"] = idempotency_key
    if location is not None:
        data["location"] = location.as_dict()
    if run.definition_sha256 is not None:
        data["definition_sha256"] = run.definition_sha256
    return data


@dataclass(frozen=True, slots=True)
class Location:
    """Where a node was declared: file, line, and place in the definition (``nodes[2]``)."""

    file: str
    line: int
    path: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "path": self.path}


_KEY_FROM_INPUT: Final[Any] = object()
"""``NodeAttempt(key_input=)``'s default: the idempotency key is made of the ``input`` recorded."""


class NodeAttempt:
    """One attempt of one node; a sync context manager (fine inside async code).

    ``with attempt("price", input=order) as a: a.set_output(price(order))``.

    A runtime that reports an attempt from callbacks uses ``start()`` and
    ``end(error)`` instead, naming the attempt's ``run`` and, for a nested
    attempt, its ``parent`` (a W3C traceparent, such as another attempt's
    ``trace_context()``).

    Once it ended, the attempt's record is fixed and the attempt lets go of
    its ``input`` (None from then on): the sender's worker writes the events
    from the snapshots taken, later, and must not keep the caller's objects alive.
    """

    __slots__ = (
        "_artifacts",
        "_attributes_record",
        "_capture_output",
        "_cost",
        "_duplicate",
        "_duration_s",
        "_ended",
        "_error",
        "_finished_record",
        "_full",
        "_given_run",
        "_given_span_id",
        "_has_input",
        "_has_output",
        "_implicit",
        "_input_record",
        "_key_input",
        "_late_attributes",
        "_log_pipeline",
        "_logs",
        "_metrics",
        "_node_token",
        "_one_event",
        "_output",
        "_output_size",
        "_pid",
        "_raw_output",
        "_run_token",
        "_simulated",
        "_span",
        "_started_ns",
        "_started_size",
        "_status",
        "_t0",
        "_unannounced",
        "attempt",
        "attributes",
        "capture",
        "capture_input",
        "effect",
        "idempotency_key",
        "input",
        "item",
        "location",
        "node_id",
        "parent",
        "run",
    )

    def __init__(
        self,
        node_id: str,
        *,
        input: Any = None,
        attempt: int = 1,
        item: int | None = None,
        effect: bool = False,
        location: Location | None = None,
        attributes: Mapping[str, Any] | None = None,
        capture_input: bool = True,
        capture_output: bool = True,
        span_id: str | None = None,
        run: Run | None = None,
        parent: str | None = None,
        capture: CaptureMode | str | None = None,
        key_input: Any = _KEY_FROM_INPUT,
    ) -> None:
        """``span_id`` (16 hex digits) fixes the attempt's span id, so that another process can complete its record.

        ``capture="full"`` also records the complete output, content-addressed (see
        :mod:`flowledger.instrument.capture._full`); None takes the run's ``capture``.
        ``key_input`` is what an effect's idempotency key is made of when ``input`` is shaped for the record
        (``@node`` records a lone secret argument as ``{name: value}``, which depends on the redaction
        patterns): a key must stay the same whatever is redacted, or the guard would run the effect again.
        """
        self.node_id = node_id
        self.parent = parent
        self._given_run = run
        self.input = input
        self._key_input = key_input
        self.attempt = attempt
        self.item = item
        self.effect = effect
        self.location = location
        self.attributes = attributes
        self.capture_input = capture_input
        self._capture_output = capture_output
        self.capture = capture if capture is None or type(capture) is CaptureMode else capture_mode(capture)
        self._full: dict[str, Any] | None = None
        self.run: Run | None = None
        self._given_span_id = span_id
        self.idempotency_key: str | None = None
        self._cost: Cost | None = None  # made on first use, as are metrics and artifacts: most attempts have none
        self._metrics: AttemptMetrics | None = None
        self._artifacts: list[dict[str, Any]] | None = None
        self._implicit: Run | None = None
        self._late_attributes: dict[str, Any] | None = None
        self._log_pipeline: Pipeline | None = None
        self._logs: AttemptLogBuffer | None = None
        self._span: SpanScope | None = None
        self._node_token: Any = None
        self._run_token: Any = None
        self._output: Any = None
        self._output_size = 0
        self._raw_output: Any = None
        self._has_output = False
        self._simulated = False
        self._duplicate = False
        self._started_ns = 0
        self._t0 = 0.0
        # what node_started and node_finished are written from, off this thread (see _pending)
        self._input_record: Any = None
        self._has_input = False
        self._attributes_record: Any = None
        self._started_size = 0
        self._unannounced = False
        self._one_event = False
        self._duration_s = 0.0
        self._ended = False
        """Set once node_finished is emitted: its fields no longer change (the worker writes the event from them)."""
        self._status = NodeStatus.SUCCEEDED
        self._error: dict[str, Any] | None = None
        self._finished_record: dict[str, Any] | None = None
        """What node_finished carries that is taken on the caller's thread (cost, metrics, artifacts, attributes)."""

    @property
    def span_id(self) -> str:
        """The attempt's span id (16 hex digits), once started or when given; else empty."""
        span = self._span
        if span is not None:
            return span.span_id
        return self._given_span_id or ""

    @property
    def ended(self) -> bool:
        """Whether the attempt's record (``node_finished``) was made; False for one that never started.

        An attempt the run's limits refused (``RunAborted`` on entering it) has no record of its own.
        """
        return self._ended

    @property
    def cost(self) -> Cost:
        """The attempt's cost so far (``flowledger.cost`` inside the attempt adds to it)."""
        cost = self._cost
        if cost is None:
            cost = self._cost = Cost()
        return cost

    # --- what the caller may use ----------------------------------------------

    def set_output(self, value: Any) -> None:
        """Record ``value`` as the attempt's output (captured now, as it is now); ignored once the attempt ended."""
        run = self.run
        if self._ended:
            return
        if self.effect:
            self._raw_output = value
        if run is None or not self._capture_output:
            return
        p = run._pipeline
        if p is not None and p.settings.capture:
            self._output, self._output_size = capture(value, p.policy)
            self._has_output = True
            if (self.capture or run.capture) is CaptureMode.FULL:
                self._full = full_capture(value, p.policy, "output")

    @property
    def output_policy(self) -> CapturePolicy | None:
        """How the output is captured; None when it is not (not started, capture off, ``capture_output=False``)."""
        run = self.run
        p = run._pipeline if run is not None and self._capture_output else None
        return p.policy if p is not None and p.settings.capture else None

    @property
    def needs_whole_output(self) -> bool:
        """Whether the whole output must reach ``set_output``: captured in full, or kept by the idempotency guard."""
        run = self.run
        if run is None:
            return False
        if self.effect:
            try:
                if _guard() is not None:
                    return True
            except Exception as exc:
                pipeline().internal_error("idempotency_guard", exc)
        return (self.capture or run.capture) is CaptureMode.FULL and self.output_policy is not None

    def set_output_record(self, record: Any, size: int) -> None:
        """Record an output captured already: ``record`` as ``capture`` makes it, ``size`` its JSON bytes."""
        if self._ended or self.output_policy is None:
            return
        self._output, self._output_size, self._has_output = record, size, True

    def set_attribute(self, key: str, value: Any) -> None:
        """Add ``key: value`` to the attempt's ``attributes`` (sent with ``node_finished``)."""
        if self._late_attributes is None:
            self._late_attributes = {}
        self._late_attributes[key] = value
        if self._span is not None and self._span.real:  # the app's exporter gets the redacted value too
            run = self.run
            p = run._pipeline if run is not None else None
            redacted = capture({key: value}, p.policy)[0] if p is not None else {key: value}
            if isinstance(redacted, RawJSON):
                redacted = redacted.value()
            self._span.add_attributes(redacted if isinstance(redacted, dict) else {key: "[UNRECORDABLE]"})

    def simulate(self, output: Any = None) -> None:
        """Mark this effect attempt as simulated (a dry run): recorded, not executed."""
        if self._ended:
            return
        self._simulated = True
        if output is not None:
            self.set_output(output)

    def guard_hit(self) -> tuple[bool, Any]:
        """With the local idempotency guard on: ``(True, output)`` if this key already succeeded."""
        guard = _guard()
        if guard is None or self.idempotency_key is None:
            return False, None
        try:
            return guard.lookup(self.idempotency_key)
        except Exception as exc:
            pipeline().internal_error("idempotency_guard", exc)
            return False, None

    def duplicate(self, output: Any = None) -> None:
        """Mark this attempt as a duplicate the guard skipped, returning ``output``."""
        if self._ended:
            return
        self._duplicate = True
        self.set_output(output)

    def add_cost(self, cost: Cost | None = None, /, **parts: Any) -> None:
        """Add cost to this attempt and to its run (what ``flowledger.cost`` does for the current node).

        Takes a :class:`Cost`, or ``flowledger.cost``'s keyword arguments; ValueError (nothing added) for bad ones.
        """
        added = cost if cost is not None else Cost(**parts)
        if self.run is not None:  # the run first: a total it cannot take is refused before the attempt's changes
            self.run.cost.merge(added)
        self.cost.merge(added)

    def add_penalty(self, penalty: Penalty | str, count: int = 1) -> None:
        """Count a penalty (a retry, a timeout) in this attempt's and its run's cost."""
        self.add_cost(penalties={str(penalty): count})

    def add_metric(self, name: str, value: float, /, **labels: Any) -> None:
        """Record a value of a custom metric on this attempt (what ``flowledger.metric`` does); UsageError if bad."""
        key, checked = check_metric(name, value, labels)
        if self._metrics is None:
            self._metrics = AttemptMetrics()
        self._metrics.observe(key, checked)

    def add_artifact(
        self, source: Source, /, *, name: str | None = None, uri: str | None = None, media_type: str | None = None
    ) -> dict[str, Any]:
        """Record an artifact of this attempt (what ``flowledger.artifact`` does); returns its record."""
        if self._artifacts is None:
            self._artifacts = []
        if len(self._artifacts) >= MAX_ARTIFACTS_PER_ATTEMPT:
            raise UsageError(f"a node attempt records at most {MAX_ARTIFACTS_PER_ATTEMPT} artifacts")
        record = artifact_record(source, name=name, uri=uri, media_type=media_type)
        self._artifacts.append(record)
        return dict(record)

    def trace_context(self) -> str | None:
        """The W3C ``traceparent`` of the attempt's span (None unless started): the parent of nested work."""
        span = self._span
        if span is None:
            return None
        return format_traceparent(span.trace_id, span.span_id)

    # --- starting and ending without a ``with`` block (runtimes' callbacks) ------

    def start(self, *, current: bool = True) -> NodeAttempt:
        """Start the attempt, as entering ``with`` does; returns the attempt.

        ``current=False`` leaves the calling context alone (the attempt is not
        the current node, its span not the current OTel span), for a runtime
        that reports the start and the end from callbacks in other contexts.
        Raises ``RunAborted`` if its run passed its deadline or budget.
        """
        return self._enter(current=current)

    def end(self, error: BaseException | None = None) -> None:
        """End the attempt, as leaving ``with`` does: failed with ``error``, else succeeded."""
        self.__exit__(None, error, None)

    # --- context manager ---------------------------------------------------------

    def _enter(self, *, current: bool = True) -> NodeAttempt:
        if self.run is not None or self._started_ns:  # started already
            return self
        run = self._given_run if self._given_run is not None else _current_run.get()
        if run is None:
            p = pipeline()
            if p.disabled:
                return self
            try:  # a dry run that is not recorded (it could not start) still simulates: so does the node's own
                self._implicit = run = Run(self.node_id, data=self.input, dry_run=in_dry_run())
            except UsageError as exc:  # an id the wire format does not take (attempt() is not checked as node() is)
                raise UsageError(f"node {_q(self.node_id)} cannot be recorded as a run of its own: {exc}") from None
            run._start(current=current)
        if not run.active:
            return self
        run.check_limits()  # raises RunAborted on purpose, before the node starts
        self.run = run
        try:
            self._begin(run, current=current)
        except Exception as exc:
            self.run = None
            pipeline().internal_error("node_start", exc)
        return self

    __enter__ = _enter  # one call less on every attempt than a method calling _enter

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        run = self.run
        if run is not None and self._t0:
            try:
                if self._pid == _pipeline.pid:
                    self._end(run, exc)
                else:  # a forked child leaving an attempt its parent began: the parent records its end
                    self._leave_forked()
            except Exception as internal:
                pipeline().internal_error("node_finish", internal)
            self._t0 = 0.0
        if self._implicit is not None:
            implicit, self._implicit = self._implicit, None
            implicit.set_output(self._output if self._has_output else None)
            # a node that ended the process fails its run too (the run is the node's call): not a success
            implicit._finish(node_exited(self.node_id, exc) if isinstance(exc, SystemExit) else exc)
            implicit.data = None  # this attempt's input: the run's record keeps its snapshot

    def _begin(self, run: Run, *, current: bool = True) -> None:
        """Start on the caller's thread: span, time, and the snapshot of what node_started carries."""
        p = run._pipeline
        assert p is not None
        named = run is not _current_run.get()  # a run named (not the current one): set up its context here
        parent = self.parent
        if parent is None and (named or not current):
            parent = run.trace_context()  # the attempt is a child of the run's span
        context = context_from_traceparent(parent) if parent else None
        tracer = run.tracer
        self._span = SpanScope(
            self.node_id,
            context,
            None if tracer is None else (lambda: self._span_attributes(run)),
            tracer,
            span_id=self._given_span_id,
        )
        self._started_ns = _time_ns()
        self._pid = _pipeline.pid  # where the attempt began: a forked child that leaves it does not record its end
        key_input, self._key_input = self._key_input, _KEY_FROM_INPUT  # used once: not kept alive with the attempt
        if self.effect:
            try:
                key_input = self.input if key_input is _KEY_FROM_INPUT else key_input
                self.idempotency_key = idempotency_key(run.workflow_id, self.node_id, key_input, item=self.item)
            except Exception as exc:  # the attempt is still recorded, as an effect without a key
                p.internal_error("idempotency_key", exc)
        size = 192
        attributes = self.attributes
        if attributes:
            self._attributes_record = (
                attributes.record(p.policy) if type(attributes) is FixedAttributes else capture(attributes, p.policy)[0]
            )
        settings = p.settings
        if self.capture_input and settings.capture:
            self._input_record, in_size = capture(self.input, p.policy)
            self._has_input = True
            size += in_size
        self._started_size = size
        self._unannounced = True
        delay_s = settings.node_start_delay_s
        if delay_s > 0:
            _heartbeat.watch_node(self, delay_s)
        else:
            self.announce()
        if settings.capture_logs:
            self._log_pipeline = p  # the buffer is made when the attempt first logs
            install_handler(_current_logs)
        if current:
            if named:  # code inside the attempt is part of its run too
                self._run_token = _current_run.set(run)
            self._span.enter()
            self._node_token = _current_node.set(self)
        self._t0 = _perf_counter()

    def _log_buffer(self) -> AttemptLogBuffer | None:
        """The attempt's log lines, made on its first line (None when logs are not captured)."""
        logs = self._logs
        if logs is None:
            p = self._log_pipeline
            if p is None:
                return None
            with _logs_lock:
                logs = self._logs
                if logs is None:
                    settings = p.settings
                    logs = self._logs = AttemptLogBuffer(
                        min_level=settings.log_level.number,
                        max_lines=settings.log_max_lines,
                        max_bytes=settings.log_max_bytes,
                        redact=p.policy.redact,
                    )
        return logs

    def _record(self, run: Run) -> dict[str, Any]:
        return node_record(
            run,
            self.node_id,
            self._span,
            attempt=self.attempt,
            item=self.item,
            location=self.location,
            effect=self.effect,
            idempotency_key=self.idempotency_key if self.effect else None,
        )

    def announce(self) -> None:
        """Emit this attempt's ``node_started`` (now, or late from the timer thread)."""
        run = self.run
        if self._unannounced and run is not None:
            self._unannounced = False
            run.emit(EventKind.NODE_STARTED, self._started_data, self._started_size, self._started_ns)

    def _started_data(self) -> dict[str, Any]:
        """``node_started``'s data, written out off the caller's thread from fields fixed when the attempt began."""
        run = self.run
        assert run is not None
        data = self._record(run)
        if self._attributes_record is not None:
            data["attributes"] = self._attributes_record
        if self._has_input:
            data["input"] = self._input_record
        return data

    def _end(self, run: Run, exc: BaseException | None) -> None:
        """End on the caller's thread: time, status, context, and what must be taken now; the dict is made later."""
        self._duration_s = _perf_counter() - self._t0
        failed = exc is not None  # sys.exit(0) too: the node did not return, it has no output
        self._status = NodeStatus.FAILED if failed else NodeStatus.SUCCEEDED
        size = _NODE_FINISHED_SIZE
        try:
            self._leave_context()
            size += self._settle(run, exc if failed else None)
        except Exception as internal:  # the record still goes out, with what is known
            pipeline().internal_error("node_finish", internal)
        finally:
            if self._logs is None:
                self._log_pipeline = None  # a line logged from now on is not the attempt's
            else:
                try:
                    self._emit_logs(run)
                except Exception as internal:
                    pipeline().internal_error("node_logs", internal)
            self._ended = True
            # The worker writes node_finished from this attempt later: it lets go of the caller's objects now
            # (the record keeps their snapshots), so a queued event never keeps a large input alive.
            self.input = None
            self._raw_output = None
            run.emit(EventKind.NODE_FINISHED, self._finished_data, size)
            span = self._span
            if span is not None:
                try:
                    if span.real:  # the application's span gets the status as an attribute
                        span.exit(
                            exc if failed else None,
                            {"flowledger.status": self._status.value},
                            self._error,
                        )
                    else:
                        span.exit()
                except Exception as internal:
                    pipeline().internal_error("span_exit", internal)

    def _leave_context(self) -> None:
        """Make the node and run current before this attempt current again (a context it did not enter: as is)."""
        if self._node_token is not None:
            token, self._node_token = self._node_token, None
            try:
                _current_node.reset(token)
            except ValueError:  # left in another context than it entered
                pass
        if self._run_token is not None:
            run_token, self._run_token = self._run_token, None
            try:
                _current_run.reset(run_token)
            except ValueError:
                pass

    def _leave_forked(self) -> None:
        """Leave, in a forked child, an attempt its parent began: its context, never its record (``node_finished``)."""
        self._leave_context()
        self._logs = None
        self._log_pipeline = None
        self.input = None
        self._raw_output = None
        if self._span is not None:
            self._span.leave()
        pipeline().forked_end()

    def _emit_logs(self, run: Run) -> None:
        """Send the attempt's captured log lines (a ``node_logs`` event, just before its ``node_finished``)."""
        logs, self._logs = self._logs, None
        self._log_pipeline = None  # a line logged from now on is not the attempt's
        if logs is None:
            return
        span = self._span
        for fields, size in logs.take():
            data: dict[str, Any] = {"node_id": self.node_id, "span_id": self.span_id, "attempt": self.attempt}
            if self.item is not None:
                data["item"] = self.item
            if span is not None:
                data["trace_id"] = span.trace_id
            data.update(fields)
            run.emit(EventKind.NODE_LOGS, data, size)

    def _settle(self, run: Run, error: BaseException | None) -> int:
        """Take on the caller's thread what ``node_finished`` needs from state that may still change; return its bytes.

        Cost, metrics, artifacts and late attributes are copied now (code
        holding the attempt may add to them later); the error is described
        while its traceback is as it was raised.
        """
        size = 0
        if _heartbeat.unwatch_node(self) and self._unannounced:  # a short attempt: one event tells all
            self._unannounced = False
            self._one_event = True
            size += self._started_size
        record: dict[str, Any] | None = None
        if self._cost:
            record = {"cost": self._cost.as_dict()}
        if self._metrics:
            record = record or {}
            record["metrics"] = self._metrics.as_list()
            record["workflow_id"] = run.workflow_id  # the receiver adds metrics up per workflow, whatever arrives first
        if self._artifacts:
            record = record or {}
            record["artifacts"] = list(self._artifacts)
            size += 256 * len(self._artifacts)
        if error is not None:
            run.note_node_failure(error, self.node_id)
            described = node_exited(self.node_id, error) if isinstance(error, SystemExit) else error
            self._error = _error_record(run, described)
            size += len(self._error.get("stack", "")) + len(self._error["message"])
        else:
            if self._has_output:
                size += self._output_size
            if self._full is not None:
                size += len(self._full.get("output_full", ""))
            if self.effect:
                self._remember_effect()
        if self._late_attributes:
            p = run._pipeline
            earlier = self._attributes_record if self._one_event else None
            merged = dict(earlier.value() if isinstance(earlier, RawJSON) else earlier or {})
            merged.update(self._late_attributes)
            if p is not None:
                record = record or {}
                record["attributes"] = capture(merged, p.policy)[0]
        self._finished_record = record
        return size

    def _finished_data(self) -> dict[str, Any]:
        """``node_finished``'s data, written out off the caller's thread; never raises."""
        run = self.run
        assert run is not None
        data = self._record(run)
        try:
            data["started_at"] = format_ts(self._started_ns)
            data["duration_ms"] = round(self._duration_s * 1000.0, 3)
            data["status"] = self._status.value
            if self._one_event:
                if self._has_input:
                    data["input"] = self._input_record
                if self._attributes_record is not None:
                    data["attributes"] = self._attributes_record
            record = self._finished_record
            if record is not None:
                for name in ("cost", "metrics", "workflow_id", "artifacts"):
                    if name in record:
                        data[name] = record[name]
            if self._simulated:
                data["simulated"] = True
            if self._duplicate:
                data["duplicate"] = True
            if self._error is not None:
                data["error"] = self._error
            else:
                if self._has_output:
                    data["output"] = self._output
                if self._full is not None:
                    data.update(self._full)
            if record is not None and "attributes" in record:
                data["attributes"] = record["attributes"]
        except Exception as internal:  # the record still goes out, with what is known
            pipeline().internal_error("node_finish", internal)
        if self._span is not None and self._span.real:
            data["otel_exported"] = True  # the application's own pipeline exports this span
        return data

    def _remember_effect(self) -> None:
        """With the guard on, keep a succeeded effect's real output (not the redacted record)."""
        if not self.effect or self._simulated or self._duplicate or not self.idempotency_key:
            return
        guard = _guard()
        if guard is None:
            return
        try:
            guard.remember(self.idempotency_key, self._raw_output)
        except Exception as exc:
            pipeline().internal_error("idempotency_guard", exc)

    def _span_attributes(self, run: Run) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            "flowledger.workflow.id": run.workflow_id,
            "flowledger.run.id": run.run_id,
            "flowledger.node.id": self.node_id,
            "flowledger.node.attempt": self.attempt,
            "flowledger.node.item": self.item,
            "flowledger.effect": self.effect,
            "flowledger.definition.sha256": run.definition_sha256,
        }
        if self.location is not None:
            attrs["flowledger.definition.file"] = self.location.file
            attrs["flowledger.definition.line"] = self.location.line
        return attrs


_guard_lock = threading.Lock()
_guards: dict[Path, IdempotencyGuard] = {}


def _forget_guards_after_fork() -> None:
    global _guard_lock, _logs_lock
    _guard_lock = threading.Lock()
    _logs_lock = threading.Lock()
    _guards.clear()  # a SQLite connection must not cross a fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_guards_after_fork)


def _guard() -> IdempotencyGuard | None:
    settings = pipeline().settings
    if not settings.idempotency_guard:
        return None
    directory = settings.idempotency_dir or settings.spool_dir.parent / "idempotency"
    with _guard_lock:
        guard = _guards.get(directory)
        if guard is None:
            guard = _guards[directory] = IdempotencyGuard(directory)
    return guard


attempt = NodeAttempt
"""``attempt(node_id, input=..., attempt=1, ...)``: record one attempt of a node, as a context manager."""


def record_skip(
    node_id: str,
    reason: str,
    *,
    item: int | None = None,
    location: Location | None = None,
    run: Run | None = None,
    attempt: int = 1,
) -> None:
    """Record that ``node_id`` was skipped, and why (a ``node_finished`` with status ``skipped``).

    The skip belongs to the current run, or to ``run`` when given. ``attempt``: the attempt that did not
    start (a retry refused by the run's limits, say).
    """
    explicit = run is not None
    run = run if run is not None else current_run()
    if run is None or not run.active:
        return
    try:
        parent = context_from_traceparent(run.trace_context()) if explicit and run is not current_run() else None
        scope = SpanScope(node_id, parent, tracer=run.tracer)
        data = node_record(run, node_id, scope, attempt=attempt, item=item, location=location)
        data["status"] = NodeStatus.SKIPPED.value
        data["skip_reason"] = reason
        data["started_at"] = format_ts(time.time_ns())
        data["duration_ms"] = 0.0
        if scope.real:
            data["otel_exported"] = True
        run.emit(EventKind.NODE_FINISHED, data, _SKIP_SIZE + len(reason))
        if scope.real:
            scope.exit(None, {"flowledger.status": NodeStatus.SKIPPED.value})
    except Exception as exc:
        pipeline().internal_error("record_skip", exc)


def cost(
    *,
    tokens: Charge = 0,
    tokens_in: Charge = 0,
    tokens_out: Charge = 0,
    tool_calls: Charge = 0,
    external_requests: Charge | Mapping[str, Charge] = 0,
    penalties: Mapping[str, Charge] | None = None,
    usd: float | Decimal = 0.0,
) -> None:
    """Add cost to the current node and its run (does nothing outside a run).

    Each category takes a count or a ``(count, usd)`` pair: ``tokens_in=(1200, 0.0036)``.
    ``external_requests`` also takes requests by service, ``{"stripe": 3}``;
    ``penalties`` takes kinds, ``{"retry": 1}``; ``usd`` is money tied to no
    category. Dollars are kept exact to the nano-dollar: pass the amount as
    written (``0.004``) or a Decimal. A bad argument is counted as an SDK
    error and adds nothing; so is a cost that would take a total past what
    the wire format holds (see :mod:`._cost`), the totals kept as they were.
    """
    try:
        parts = cost_parts(
            tokens=tokens,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            tool_calls=tool_calls,
            external_requests=external_requests,
            penalties=penalties,
            usd=usd,
        )
        node_attempt = current_node()
        run = current_run()
        if run is not None:  # the run first: a total past the wire format's bound is refused before any is changed
            run.cost.add_parts(parts)
        if node_attempt is not None:
            node_attempt.cost.add_parts(parts)
    except Exception as exc:
        pipeline().internal_error("cost", exc)


def _node_for(what: str) -> NodeAttempt | None:
    """The current attempt; None when records are off; UsageError outside a node of a recorded run."""
    node_attempt = current_node()
    if node_attempt is not None:
        return node_attempt
    run = current_run()
    if pipeline().disabled or (run is not None and not run.active):
        return None
    raise UsageError(
        f"flowledger.{what}() records on the current node: call it inside a function decorated with "
        "@flowledger.node (or inside `with flowledger.instrument.attempt(...)`)"
    )


def metric(name: str, value: float, /, **labels: str | int | bool) -> None:
    """Record one value of a custom metric on the current node: ``metric("provider_cache_hit", 1, provider="x")``.

    Names are letters, digits and ``_``; at most 8 labels of short string,
    int or bool values; values finite. Raises UsageError, saying what to
    change, for a bad name, label or value, and outside a node.
    """
    node_attempt = _node_for("metric")
    if node_attempt is not None:
        node_attempt.add_metric(name, value, **labels)


def artifact(
    path_or_bytes: Source, /, *, name: str | None = None, uri: str | None = None, media_type: str | None = None
) -> None:
    """Record what the current node produced: a file (hashed as it is read) or bytes, with its size and sha256.

    ``name`` defaults to the file's name (bytes need one), ``uri`` to the
    file's ``file://`` URI, ``media_type`` to a guess from the name. Over
    50 MiB the sha256 is skipped and the record says why. Raises UsageError
    outside a node.
    """
    node_attempt = _node_for("artifact")
    if node_attempt is not None:
        node_attempt.add_artifact(path_or_bytes, name=name, uri=uri, media_type=media_type)
