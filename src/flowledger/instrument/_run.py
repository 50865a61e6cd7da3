"""``flowledger.run(...)``: one workflow run, as a sync or async context manager.

Entering a run emits ``run_started``, makes the run (and its span) current
and starts its heartbeats; leaving it emits ``run_finished`` with the
status, the error and its failing node, the cost totals and the duration.
An exception marks the run failed (``RunAborted``: aborted) and propagates;
so does ``SystemExit`` from a node (recorded as ``NodeExited``, with the
node's id), while ``sys.exit(0)`` in the run's own code ends it succeeded.
Recording never raises into the caller: a failure to record is counted and
the workflow goes on. Its arguments are checked when the run is made, so
that every event it sends is one the receiver takes: a value the wire
format does not hold raises ConfigError at the call, naming the argument.

A dry run is a dry run whatever happens to its recording: with flowledger
disabled, or when the run could not start, its code still runs inside it
(``in_dry_run()``) and its effect nodes are simulated, never carried out.
"""

from __future__ import annotations

import contextvars
import itertools
import math
import re
import time
import traceback
import uuid
from collections.abc import Mapping
from decimal import Decimal
from reprlib import repr as _q  # quoted, and cut short: a message never carries a whole value
from types import TracebackType
from typing import Any, Final

from opentelemetry.trace import Tracer

from flowledger._exceptions import ConfigError, NodeExited, RunAborted, UsageError
from flowledger._run_context import RUN_ID_PATTERN, usable
from flowledger._wire import (
    AbortReason,
    CaptureMode,
    EventKind,
    RunStatus,
    TriggerType,
    format_ts,
    new_event_id,
)
from flowledger.instrument import _heartbeat, _pipeline
from flowledger.instrument._cost import Cost
from flowledger.instrument._logs import redact_text
from flowledger.instrument._otel import (
    SpanScope,
    app_tracer,
    attach_context,
    context_from_traceparent,
    detach_context,
    foreign_parent_sampled,
    format_traceparent,
)
from flowledger.instrument._otel_env import note_parent
from flowledger.instrument._pending import EventData
from flowledger.instrument._pipeline import Pipeline, pipeline
from flowledger.instrument._sampling import HeldEvents, draws_out, rate_for
from flowledger.instrument.capture import capture, capture_mode, clean_str, full_capture, safe_str

__all__ = [
    "MAX_ID_CHARS",
    "MAX_LIMIT",
    "MAX_NAME_CHARS",
    "MAX_VERSION_CHARS",
    "Run",
    "current_run",
    "error_record",
    "in_dry_run",
    "node_exited",
    "run",
]

MAX_STACK_CHARS: Final = 16_384
"""The end of a stack trace that is kept (the innermost frames)."""
STACK_MESSAGE_CHARS: Final = MAX_STACK_CHARS // 4
"""How much of each message a stack trace shows: the rest of the stack's end is left to the frames."""
DEFAULT_MESSAGE_CHARS: Final = 4096
"""How much of an error message is kept when no capture limit applies."""
MAX_ID_CHARS: Final = 256
"""Longest workflow or node id (``events.v1.schema.json``; a test holds them equal)."""
MAX_NAME_CHARS: Final = 1024
"""Longest ``name`` of a run (the wire format's ``workflow_name``)."""
MAX_VERSION_CHARS: Final = 256
"""Longest ``version`` of a run (the wire format's ``workflow_version``)."""
MAX_LIMIT: Final = 2**53
"""The largest ``deadline_s`` or ``budget_usd``: the wire format bounds numbers to 2**53 (a float's exact integers)."""
_SHA256: Final = re.compile(r"[0-9a-f]{64}")
"""A definition's sha256 (``definition_sha256``, ``resumed_from_definition_sha256``): 64 lowercase hex digits."""
_CONTEXT_DATA: Final = ("user_id", "agent_id", "intent", "parent_run_id")
"""The run context sent in ``run_started``'s data (the project goes in every event's envelope)."""
_RUN_FINISHED_SIZE: Final = 512
"""Bytes a ``run_finished`` record takes besides its payloads (an estimate)."""

_current_run: contextvars.ContextVar[Run | None] = contextvars.ContextVar("flowledger_run", default=None)
_dry_run: contextvars.ContextVar[bool] = contextvars.ContextVar("flowledger_dry_run", default=False)
"""Whether the code is inside a dry run, recorded or not: set by every run entered, apart from its recording."""


def in_dry_run() -> bool:
    """Whether the calling code runs inside a dry run, recorded or not (flowledger disabled, a run that did not start).

    Effect nodes read it when no recorded run tells them: a dry run simulates its effects whatever happens to
    its recording.
    """
    return _dry_run.get()


def node_exited(node_id: str, exit: SystemExit) -> NodeExited:
    """What a node that raised ``exit`` is recorded as failing with: a NodeExited naming it, caused by ``exit``."""
    code = "" if exit.code is None else repr(exit.code)
    error = NodeExited(
        f"node `{node_id}` called sys.exit({code}) instead of returning: return the node's output, "
        "or raise an exception to fail it"
    )
    error.__cause__ = exit
    return error


def error_record(
    exc: BaseException, *, stack: bool = True, limit_chars: int | None = None, redact: re.Pattern[str] | None = None
) -> dict[str, Any]:
    """The wire form of an exception: ``{type, message, stack}``; never raises.

    The message is cut to ``limit_chars`` (a multi-megabyte message must not
    make a multi-megabyte record), an exception whose ``__str__`` raises
    is described instead, and lone surrogates become U+FFFD. With
    ``redact``, the message and the stack are redacted as captured log text
    is (``password=[REDACTED]``, see ``_logs.redact_text``).
    """
    cls = type(exc)
    name = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    limit = limit_chars or DEFAULT_MESSAGE_CHARS
    message = clean_str(safe_str(exc))  # a lone surrogate would make the event unsendable
    more = len(message) - limit
    if more > 0:
        message = message[:limit]
    message = redact_text(message, redact)
    if more > 0:
        message += f"... [{more} more characters]"
    record: dict[str, Any] = {"type": name, "message": message}
    if stack:
        text = _stack_text(exc, name, message)
        if len(text) > MAX_STACK_CHARS:
            text = text[-MAX_STACK_CHARS:]
            if redact is not None:  # the first line, cut, may have lost the key of a secret pair: it goes
                text = text[text.find("\n") + 1 :] if "\n" in text else ""
        record["stack"] = clean_str(redact_text(text, redact))
    return record


def _stack_text(exc: BaseException, name: str, message: str) -> str:
    """The formatted stack of ``exc`` (its chain too), each message and note in it cut to ``STACK_MESSAGE_CHARS``.

    The stack's end is kept (the innermost frames, see ``MAX_STACK_CHARS``): a message is the last thing of
    its part, so one of 20 KiB formatted whole would leave that end nothing but message. ``message`` (the
    record's) stands for the exception's when the formatter itself fails.
    """
    try:
        formatted = traceback.TracebackException.from_exception(exc)
        _cut_messages(formatted)
        return "".join(formatted.format())
    except Exception:  # str() of the exception raised inside the formatter
        return "".join(traceback.format_tb(exc.__traceback__)) + f"{name}: {message}\n"


def _cut(text: str) -> str:
    more = len(text) - STACK_MESSAGE_CHARS
    return text if more <= 0 else f"{text[:STACK_MESSAGE_CHARS]}... [{more} more characters]"


def _cut_messages(formatted: traceback.TracebackException) -> None:
    """Cut the message and notes of every exception of ``formatted`` (its causes, contexts and group members).

    A TracebackException keeps the message it formats as ``_str`` (CPython 3.11 to 3.13; without it the
    stack is kept as formatted) and the notes as ``__notes__``, the exception's own list (replaced, not changed).
    """
    todo = [formatted]
    seen: set[int] = set()
    while todo:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        text = getattr(item, "_str", None)
        if isinstance(text, str):
            item._str = _cut(text)  # type: ignore[attr-defined]  # CPython's, not in the stubs
        notes = getattr(item, "__notes__", None)
        if isinstance(notes, list):
            item.__notes__ = [_cut(note) if isinstance(note, str) else note for note in notes]
        todo.extend(linked for linked in (item.__cause__, item.__context__) if linked is not None)
        todo.extend(getattr(item, "exceptions", None) or ())


def _refused(name: str, problem: str) -> ConfigError:
    return ConfigError(f"flowledger.run(): {name} {problem}.")


def _checked_text(name: str, value: object, max_chars: int, *, empty: bool = False) -> str:
    """``value`` as a run's text field: a string (non-empty unless ``empty``) of at most ``max_chars``; else
    ConfigError."""
    if not isinstance(value, str):
        raise _refused(name, f"must be a string, not {type(value).__name__}")
    if not value and not empty:
        raise _refused(name, "must not be empty")
    if len(value) > max_chars:
        raise _refused(name, f"is {len(value)} characters long; the wire format takes at most {max_chars}")
    return clean_str(value)  # a lone surrogate: U+FFFD, in events and spans alike


def _checked_run_id(name: str, value: object) -> str | None:
    """A run id given to a run (a UUID, lowercased: what the wire format takes); ConfigError otherwise."""
    if value is None:
        return None
    text = str(value) if isinstance(value, uuid.UUID) else value
    if not isinstance(text, str) or RUN_ID_PATTERN.fullmatch(text.lower()) is None:
        shown = _q(text) if isinstance(text, str) else type(text).__name__
        raise _refused(name, f"must be a UUID (the runtime's own id for the run, or None for a new one), not {shown}")
    return text.lower()


def _checked_sha256(name: str, value: object) -> str | None:
    """A definition's sha256 (64 hex digits, lowercased); ConfigError otherwise."""
    if value is None:
        return None
    if not isinstance(value, str) or _SHA256.fullmatch(value.lower()) is None:
        shown = _q(value) if isinstance(value, str) else type(value).__name__
        raise _refused(name, f"must be a sha256 of 64 hex digits, not {shown}")
    return value.lower()


def _checked_limit(name: str, value: object, *, zero: bool) -> float | None:
    """``deadline_s`` (more than 0) or ``budget_usd`` (0 or more) as the float the wire format takes.

    An int or a Decimal is taken (money is best given as a Decimal); a string, a bool, a NaN, a value
    past :data:`MAX_LIMIT` or one whose float is out of range (``Decimal("1e-400")`` is 0.0) raises ConfigError.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise _refused(name, f"must be a number (an int, a float or a Decimal), not {type(value).__name__}")
    lowest = "0 or more" if zero else "more than 0"
    too_long = isinstance(value, int) and value.bit_length() > 64  # too long to print (and to read), or to convert
    sent = math.nan if too_long else _as_float(value)

    def within(number: int | float | Decimal) -> bool:
        return (number >= 0 if zero else number > 0) and number <= MAX_LIMIT

    # The range is checked on the float, for that is what the receiver checks (Decimal("1e-400") is sent as
    # 0.0), and on the value as given, for that is what the caller meant (2**53 + 1 is sent as 2**53, -1e-400
    # as -0.0). A NaN fails ``isfinite`` first: a Decimal NaN must not reach a comparison, which raises.
    if not math.isfinite(sent) or not (within(sent) and within(value)):
        shown = f"an integer of {value.bit_length()} bits" if isinstance(value, int) and too_long else _q(value)
        if math.isfinite(sent) and within(value):  # in range, but not once a float: say what it would be sent as
            shown += f", which is sent as the float {sent!r}"
        raise _refused(name, f"must be {lowest} and at most 2**53, not {shown}")
    return sent


def _as_float(value: int | float | Decimal) -> float:
    """``value`` as the float sent for it; NaN for what has none (a signalling NaN, an int past a float's range)."""
    try:
        return float(value)
    except (ValueError, OverflowError):
        return math.nan


def current_run() -> Run | None:
    """The run the calling code is part of, or None."""
    return _current_run.get()


class Run:
    """A workflow run. Use ``with flowledger.run(...) as run:`` or ``async with``.

    ``data`` is the trigger payload. ``deadline_s`` and ``budget_usd`` abort
    the run at the next node boundary once passed. ``traceparent`` continues
    an incoming W3C trace; without it the run joins the current OTel span.
    ``run_id`` adopts a runtime's own id for the run (a UUID), so that the
    runtime's other processes can continue the run by it; by default a new
    UUIDv7 is made. ``capture="full"`` records the complete trigger data and
    node outputs (content-addressed) besides their previews.
    ``resumed_from`` names the run this one resumes, and
    ``resumed_from_definition_sha256`` that run's definition. ``sample_rate`` (0 to 1) overrides the configured rate
    for this run: a run drawn out is dropped whole at its end unless it
    failed, was aborted or was slow (see ``_sampling``).

    The run context: ``project`` (default: the parent run's, then
    ``configure(project=)`` / ``FLOWLEDGER_PROJECT``; ``""``: no project, whatever
    the defaults, as a resume of a run without one is), ``user_id`` (who the run
    is for; default: the parent run's, then the configured one), ``agent_id``
    (which agent runs it; default: the configured one), ``intent`` (why) and
    ``parent_run_id`` (default: the run current where this one starts, so a
    run started inside another records it). A value the wire format does not
    take is reported once and left out.

    Every other argument is checked here, against what the wire format
    takes (a string, its length, a UUID, a sha256, a number's range):
    ConfigError names the one that is not, before anything is recorded.
    ``deadline_s`` and ``budget_usd`` take an int, a float or a Decimal
    (sent as the float nearest to it); ``version`` a number as its text.
    """

    def __init__(
        self,
        workflow_id: str,
        *,
        name: str | None = None,
        version: str | int | None = None,
        trigger: TriggerType | str = TriggerType.MANUAL,
        data: Any = None,
        dry_run: bool = False,
        deadline_s: float | Decimal | None = None,
        budget_usd: float | Decimal | None = None,
        definition_sha256: str | None = None,
        traceparent: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        run_id: str | uuid.UUID | None = None,
        capture: CaptureMode | str | None = None,
        resumed_from: str | uuid.UUID | None = None,
        resumed_from_definition_sha256: str | None = None,
        sample_rate: float | None = None,
        project: str | None = None,
        user_id: str | None = None,
        agent_id: str | None = None,
        intent: str | None = None,
        parent_run_id: str | None = None,
    ) -> None:
        if sample_rate is not None and not (isinstance(sample_rate, int | float) and 0.0 <= sample_rate <= 1.0):
            raise ConfigError(f"flowledger.run(): sample_rate must be a number from 0 to 1, not {sample_rate!r}.")
        self.sample_rate = sample_rate
        self._held: HeldEvents | None = None
        self._dropped = False
        """Set once the run was sampled out at its end: from then on it emits nothing (see ``emit``)."""
        self.workflow_id = _checked_text("workflow_id", workflow_id, MAX_ID_CHARS)
        try:
            self.capture = capture_mode(capture)
        except UsageError as exc:
            raise _refused("capture", str(exc).removeprefix("capture ")) from None
        self.resumed_from = _checked_run_id("resumed_from", resumed_from)
        self.resumed_from_definition_sha256 = _checked_sha256(
            "resumed_from_definition_sha256", resumed_from_definition_sha256
        )
        self.name = None if name is None else _checked_text("name", name, MAX_NAME_CHARS, empty=True)
        # a version is text, but a number is clearly meant as its text (version=3)
        self.version = (
            None if version is None else _checked_text("version", str(version), MAX_VERSION_CHARS, empty=True)
        )
        try:
            self.trigger = TriggerType(trigger)
        except ValueError:
            choices = ", ".join(t.value for t in TriggerType)
            raise _refused("trigger", f"must be one of {choices}, not {_q(trigger)}") from None
        self.data = data
        self.dry_run = bool(dry_run)
        self.deadline_s = _checked_limit("deadline_s", deadline_s, zero=False)
        self.budget_usd = _checked_limit("budget_usd", budget_usd, zero=True)
        self.definition_sha256 = _checked_sha256("definition_sha256", definition_sha256)
        if traceparent is not None and not isinstance(traceparent, str):
            raise _refused("traceparent", f"must be a W3C traceparent string, not {type(traceparent).__name__}")
        self.traceparent = traceparent
        if attributes is not None and not isinstance(attributes, Mapping):
            raise _refused("attributes", f"must be a mapping of names to values, not {type(attributes).__name__}")
        self.attributes = dict(attributes) if attributes else None
        self._projectless = project == ""  # no project, not even the defaults
        self.project = None if self._projectless else usable("project", project)
        self.user_id = usable("user_id", user_id)
        self.agent_id = usable("agent_id", agent_id)
        self.intent = usable("intent", intent)
        self.parent_run_id = usable("parent_run_id", parent_run_id)
        self.cost = Cost()
        self.tracer: Tracer | None = None
        self.run_id = ""
        self._given_id = _checked_run_id("run_id", run_id)
        self.trace_id = ""
        self.span_id = ""
        self.active = False
        self._pipeline: Pipeline | None = None
        self._seq = itertools.count()
        self._span: SpanScope | None = None
        self._token: contextvars.Token[Run | None] | None = None
        self._started_ns = 0
        self._t0 = 0.0
        self._deadline_at: float | None = None
        self._output: Any = None
        self._has_output = False
        self._failure: tuple[BaseException, str | None] | None = None
        self._node_failures: list[tuple[BaseException, str]] = []
        self._abort: RunAborted | None = None
        self._finished = False
        self._continued = False
        self._remote_token: object | None = None
        self._dry_token: contextvars.Token[bool] | None = None
        """Set while the run is entered and makes its code a dry run or not (``in_dry_run``), recorded or not."""
        self._parent: Run | None = None
        """The run of this process this one started in (its ``parent_run_id``): kept when this one is (sampling)."""
        self._pid = 0
        """The process the run started in: a forked child that leaves it does not record its end (``_finish``)."""

    @classmethod
    def continued(cls, run_id: str, *, workflow_id: str, traceparent: str | None = None) -> Run:
        """The part of run ``run_id`` that runs here, when another process started the run.

        Start it like a run (``with``, or ``start()``/``end()``): node attempts
        recorded in it belong to ``run_id`` and their spans to the trace of
        ``traceparent`` (the caller's span, carried by the runtime), while the
        run's own start, end, status and heartbeats stay with the process that
        started it. A worker's cost is in its node records, not in the run's total.
        """
        checked = _checked_run_id("run_id", run_id)
        if checked is None:
            raise _refused("run_id", "is needed to continue a run: the id of the run another process started")
        part = cls(workflow_id, traceparent=traceparent)
        part.run_id = checked
        part._continued = True
        return part

    @property
    def continues(self) -> bool:
        """Whether this is the part of a run that another process started (see ``continued``)."""
        return self._continued

    def trace_context(self) -> str | None:
        """The W3C ``traceparent`` of the run's span (None before it starts): to carry the run elsewhere."""
        if not self.trace_id or not self.span_id:
            return None
        return format_traceparent(self.trace_id, self.span_id)

    # --- starting and ending without a ``with`` block (runtimes' callbacks) ----

    def start(self, *, current: bool = True) -> Run:
        """Start recording the run, as entering ``with`` does; returns the run.

        ``current=False`` leaves the calling context alone: the run does not
        become the current run, nor its span the current OTel span. That is
        for runtimes that report a start and an end from callbacks, in
        threads or contexts other than the work's; their node attempts then
        name the run (``attempt(..., run=run)``).
        """
        self._start(current=current)
        return self

    def end(self, error: BaseException | None = None) -> None:
        """Finish the run, as leaving ``with`` does: failed with ``error``, otherwise by its outcome."""
        self._finish(error)

    # --- context manager protocol ----------------------------------------

    def __enter__(self) -> Run:
        self._start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._finish(exc)

    async def __aenter__(self) -> Run:
        self._start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._finish(exc)

    # --- what a run's code may call ----------------------------------------

    def set_output(self, value: Any) -> None:
        """Record ``value`` as the run's output (in ``run_finished``)."""
        self._output = value
        self._has_output = True

    def remaining_s(self) -> float | None:
        """Seconds left before the deadline, or None without a deadline."""
        if self._deadline_at is None:
            return None
        return max(0.0, self._deadline_at - time.monotonic())

    def check_limits(self) -> None:
        """Raise RunAborted if the run passed its deadline or its budget."""
        if self._abort is not None:
            raise self._abort
        if self._deadline_at is not None and time.monotonic() > self._deadline_at:
            self._abort = RunAborted(AbortReason.DEADLINE, f"the run passed its deadline of {self.deadline_s:g} s")
            raise self._abort
        if self.budget_usd is not None and self.cost.usd > self.budget_usd:
            self._abort = RunAborted(
                AbortReason.BUDGET, f"the run's cost ${self.cost.usd:.6g} passed its budget of ${self.budget_usd:.6g}"
            )
            raise self._abort

    def fail(self, exc: BaseException, node_id: str | None = None) -> None:
        """Mark the run failed with ``exc`` (from ``node_id``) without raising."""
        if self._failure is None:
            self._failure = (exc, node_id)

    def abort(self, reason: AbortReason | str, message: str) -> None:
        """Mark the run aborted (it ends with status ``aborted``) without raising."""
        if self._abort is None:
            self._abort = RunAborted(reason, message)

    # --- used by the node hooks ------------------------------------------------

    def emit(self, kind: EventKind, data: EventData, size: int = 256, ts_ns: int | None = None) -> None:
        """Number an event of this run and send it (``data``: a dict, or what makes it off this thread).

        Once the run was dropped by sampling, what it would still emit (a node
        that ends after the run did, in another thread) is discarded: it was
        dropped whole, and a late event would make it reappear without its start.
        """
        if self.active:
            held = self._held
            if held is None:
                if self._dropped:  # read after _held: _drop_held sets this first
                    return
                seq = next(self._seq)
            else:
                if self._pid != _pipeline.pid:
                    # a forked child's copy of a run held: never kept from here (see _keep), so what it would
                    # hold is lost with the copy, even an event too big to hold
                    return
                with held.lock:
                    if self._dropped:  # dropped while this event waited for the lock
                        return
                    seq = next(self._seq)
                    if self._held is not None:
                        if held.add(kind, seq, data, size, ts_ns or time.time_ns()):
                            return
                        self._release_held()  # too big to hold: the run is kept
            # the current pipeline, so a configure() during the run does not lose the rest of it
            pipeline().emit(kind, self.run_id, seq, data, size, ts_ns, "" if self._projectless else self.project)

    def _release_held(self) -> None:
        """Keep a run drawn out after all: send what it held, in order (the caller holds the lock).

        The run it started in is kept first (see ``_keep``), so that its ``parent_run_id`` names a run the
        receiver has; when that run was dropped already, the link is left out.
        """
        held, self._held = self._held, None
        if held is None:
            return
        parent, self._parent = self._parent, None
        if parent is not None and not parent._keep():
            for kind, _, data, _, _ in held.events:
                if kind is EventKind.RUN_STARTED and isinstance(data, dict):
                    data.pop("parent_run_id", None)
        p = pipeline()
        for kind, seq, data, size, ts_ns in held.events:
            p.emit(kind, self.run_id, seq, data, size, ts_ns, "" if self._projectless else self.project)

    def _keep(self) -> bool:
        """Keep this run though it was drawn out, because a run started in it is kept; False if dropped already.

        A kept run's ``parent_run_id`` must name a run the receiver has: its held events go out now (and its
        own parent's first), and it is sent as any kept run from then on. Locks are taken from a run to the
        run it started in, never the other way.

        A forked child never keeps a run it inherited that is still held (False, as for one dropped): the
        parent process decides that run's sampling and sends its end, so a start sent from the child would
        be a run left ``running`` for ever when the parent drops it.
        """
        held = self._held
        if held is None:
            return not self._dropped  # kept already, never drawn out, or dropped (``_dropped`` is set first)
        if self._pid != _pipeline.pid:  # the child's copy: its lock may even be held by a thread the fork lost
            return False
        with held.lock:
            if self._dropped:
                return False
            self._release_held()
        return True

    def note_node_failure(self, exc: BaseException, node_id: str) -> None:
        self._node_failures.append((exc, node_id))
        if len(self._node_failures) > 64:
            del self._node_failures[:32]

    def heartbeat(self) -> None:
        """Tell the receiver the run is alive (called by the heartbeat thread)."""
        if self.active and not self._finished:
            self.emit(EventKind.HEARTBEAT, {"cost": self.cost.as_dict()} if self.cost else {})

    # --- internals -----------------------------------------------------------

    def _start(self, *, current: bool = True) -> None:
        # before recording: a dry run simulates, recorded or not (a part continued here does not know: as is)
        entering = current and self._dry_token is None and not self.active and not self._finished
        if entering and not self._continued and (self.dry_run or _dry_run.get()):
            self._dry_token = _dry_run.set(self.dry_run)
        p = pipeline()
        if p.disabled or self.active or self._finished:
            return
        if self._continued:
            self._start_part(p, current=current)
            return
        try:
            self._pipeline = p
            self._pid = _pipeline.pid
            self.run_id = self._given_id or new_event_id()
            self._take_context(p)
            parent = context_from_traceparent(self.traceparent)
            self.tracer = app_tracer(p.settings)  # looked up once a run: its nodes use the same
            self._span = SpanScope(f"run {self.workflow_id}", parent, self._span_attributes(), self.tracer)
            self.trace_id, self.span_id = self._span.trace_id, self._span.span_id
            if self._span.parent_span_id is not None and not self._span.real:  # the SDK's export samples it
                sampled = foreign_parent_sampled(parent)
                if sampled is not None:  # a parent-based sampler follows the caller's flag for this trace
                    note_parent(self.trace_id, sampled)
            self._started_ns = time.time_ns()
            self._t0 = time.perf_counter()
            if self.deadline_s is not None:
                self._deadline_at = time.monotonic() + self.deadline_s
            trigger_data, size = capture(self.data, p.policy) if p.settings.capture else (None, 4)
            data: dict[str, Any] = {
                "workflow_id": self.workflow_id,
                "workflow_name": self.name,
                "workflow_version": self.version,
                "trigger_type": self.trigger.value,
                "trigger_data": trigger_data,
                "dry_run": self.dry_run,
                "trace_id": self.trace_id,
                "span_id": self.span_id,
                "parent_span_id": self._span.parent_span_id,
                "definition_sha256": self.definition_sha256,
                "limits": {"deadline_s": self.deadline_s, "budget_usd": self.budget_usd},
                "heartbeat_interval_s": p.settings.heartbeat_interval_s,
                "service_name": p.settings.service_name,
            }
            if self.attributes:
                data["attributes"] = capture(self.attributes, p.policy)[0]
            for name in _CONTEXT_DATA:
                value = getattr(self, name)
                if value is not None:
                    data[name] = value
            if self.resumed_from is not None:
                data["resumed_from"] = self.resumed_from
                data["resumed_from_definition_sha256"] = self.resumed_from_definition_sha256
            if self.capture is CaptureMode.FULL and p.settings.capture:
                full = full_capture(self.data, p.policy, "trigger_data")
                data.update(full)
                size += len(full.get("trigger_data_full", ""))
            settings = p.settings
            rate = rate_for(
                self.workflow_id, self.sample_rate, settings.sample_rate, dict(settings.sample_rate_by_workflow)
            )
            if draws_out(rate):
                self._held = HeldEvents()
            elif self._parent is not None:  # a run kept from its start keeps the run it started in
                parent_run, self._parent = self._parent, None
                if not parent_run._keep():  # dropped already, or held by the process this one forked from
                    data.pop("parent_run_id", None)
            self.active = True
            self.emit(EventKind.RUN_STARTED, data, size)
            if current:
                self._span.enter()
                self._token = _current_run.set(self)  # a node attempt of an outer run is no longer current
            _heartbeat.register(self, p.settings.heartbeat_interval_s)
        except Exception as exc:
            p.internal_error("run_start", exc)

    def _take_context(self, p: Pipeline) -> None:
        """Fill the context not given from the run this one starts in, then from the settings."""
        parent = _current_run.get()
        if parent is not None and (not parent.active or parent is self or not parent.run_id):
            parent = None
        if parent is not None:
            if self.parent_run_id is None and parent.run_id != self.run_id:
                self.parent_run_id = parent.run_id
            if self.parent_run_id == parent.run_id:
                self._parent = parent
            self.project = None if self._projectless else self.project or parent.project
            self.user_id = self.user_id or parent.user_id
        self.project = None if self._projectless else self.project or p.settings.project
        self.user_id = self.user_id or p.settings.user_id
        self.agent_id = self.agent_id or p.settings.agent_id

    def _start_part(self, p: Pipeline, *, current: bool) -> None:
        """Start the part of a run another process started: no record of its own, only context."""
        try:
            self._pipeline = p
            parent = context_from_traceparent(self.traceparent)
            self.tracer = app_tracer(p.settings)
            if parent is not None:
                self.trace_id, self.span_id = SpanScope.ids_of(parent)
            self._started_ns = time.time_ns()
            self._t0 = time.perf_counter()
            self.active = True
            if current:
                if parent is not None:
                    self._remote_token = attach_context(parent)
                self._token = _current_run.set(self)
        except Exception as exc:
            p.internal_error("run_start", exc)

    def _span_attributes(self) -> dict[str, Any]:
        return {
            "flowledger.workflow.id": self.workflow_id,
            "flowledger.workflow.name": self.name,
            "flowledger.workflow.version": self.version,
            "flowledger.dry_run": self.dry_run,
            "flowledger.trigger": self.trigger.value,
            "flowledger.definition.sha256": self.definition_sha256,
        }

    def _failing_node(self, exc: BaseException) -> str | None:
        chain: list[BaseException] = []
        todo: list[BaseException] = [exc]
        while todo and len(chain) < 32:
            item = todo.pop()
            chain.append(item)
            if isinstance(item, BaseExceptionGroup):
                todo.extend(item.exceptions)
            for linked in (item.__cause__, item.__context__):
                # by identity: ``in`` calls __eq__, which an exception of the caller's may override (and raise in)
                if linked is not None and not any(linked is seen for seen in chain):
                    todo.append(linked)
        for failed, node_id in reversed(self._node_failures):
            if any(failed is item for item in chain):
                return node_id
        return None

    def _finish(self, exc: BaseException | None) -> None:
        if self._dry_token is not None:  # a run that was not recorded leaves its dry run too
            dry_token, self._dry_token = self._dry_token, None
            try:
                _dry_run.reset(dry_token)
            except ValueError:  # left in another context than it entered
                pass
        if not self.active or self._finished:
            return
        self._finished = True
        if self._continued:
            self._finish_part()
            return
        if self._pid != _pipeline.pid:  # a forked child leaving its parent's run: the parent records its end
            self._finish_forked()
            return
        status = RunStatus.FAILED if exc is not None else RunStatus.SUCCEEDED
        data: dict[str, Any] = {
            "status": status.value,
            "error": None,
            "cost": self.cost.as_dict(),
            "started_at": format_ts(self._started_ns),
            "duration_ms": round((time.perf_counter() - self._t0) * 1000.0, 3),
            "workflow_id": self.workflow_id,
            "workflow_name": self.name,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_span_id": self._span.parent_span_id if self._span else None,
        }
        size = _RUN_FINISHED_SIZE
        try:
            _heartbeat.unregister(self)
            if self._token is not None:
                token, self._token = self._token, None
                try:
                    _current_run.reset(token)
                except ValueError:  # left in another context than it entered
                    pass
            status, data["error"] = self._outcome(exc)
            data["status"] = status.value
            p = self._pipeline
            if self._has_output and p is not None and p.settings.capture:
                data["output"], out_size = capture(self._output, p.policy)
                size += out_size
        except Exception as internal:  # the record still goes out, with what is known
            pipeline().internal_error("run_finish", internal)
        finally:
            if self._span is not None and self._span.real:
                data["otel_exported"] = True  # the application's own pipeline exports this span
            if self._held is None or not self._drop_held(status, data):
                self.emit(EventKind.RUN_FINISHED, data, size)
            self._parent = None  # kept or dropped: decided; it no longer holds its parent alive
            if self._span is not None:
                failure = exc if status is not RunStatus.SUCCEEDED and exc is not None else None
                try:
                    self._span.exit(
                        failure,
                        {"flowledger.status": status.value, "flowledger.run.id": self.run_id},
                        data.get("error"),
                    )
                except Exception as internal:
                    pipeline().internal_error("span_exit", internal)

    def _drop_held(self, status: RunStatus, data: dict[str, Any]) -> bool:
        """At the end of a run drawn out: drop it (True) unless it failed, was aborted or was slow (then keep it)."""
        held = self._held
        p = self._pipeline
        if held is None or p is None:
            return False
        slow = data["duration_ms"] >= p.settings.sample_slow_s * 1000.0
        with held.lock:
            if status is not RunStatus.SUCCEEDED or slow:
                self._release_held()
                return False
            self._dropped = True  # before _held goes: an emit that finds no buffer must find the run dropped
            self._held = None
        counted = {"workflow_id": self.workflow_id, "runs": 1, "duration_ms": data["duration_ms"]}
        project = "" if self._projectless else self.project
        pipeline().emit(EventKind.RUN_SAMPLED_OUT, self.run_id, next(self._seq), counted, 128, None, project)
        return True

    def _finish_forked(self) -> None:
        """Leave, in a forked child, a run its parent started: no ``run_finished`` (nor span end) from here.

        The parent's copy of the run goes on and ends it with the parent's
        outcome; the child's exit or error is the child's own. Node attempts
        the child began in the run are recorded in it, as a worker's part of
        a run is (``continued``). Counted in ``stats()`` as ``forked_ends``.
        """
        self._finish_part()
        if self._span is not None:
            self._span.leave()
        pipeline().forked_end()

    def _finish_part(self) -> None:
        token, self._token = self._token, None
        if token is not None:
            try:
                _current_run.reset(token)
            except ValueError:  # left in another context than it entered
                pass
        remote, self._remote_token = self._remote_token, None
        if remote is not None:
            detach_context(remote)

    def _exited_node(self, exc: SystemExit) -> str | None:
        """The node whose failure ``exc`` is (its code called ``sys.exit``), the outermost when it left several."""
        for failed, node_id in reversed(self._node_failures):
            if failed is exc:
                return node_id
        return None

    def _outcome(self, exc: BaseException | None) -> tuple[RunStatus, dict[str, Any] | None]:
        if isinstance(exc, SystemExit):
            exited = self._exited_node(exc)
            if exited is not None:  # a node called sys.exit: it failed, so does its run (as a node's own run does)
                exc = node_exited(exited, exc)
            elif exc.code in (None, 0):  # the run's own code ended the process successfully
                exc = None
        if exc is None and self._abort is not None:
            exc = self._abort
        policy = self._pipeline.policy if self._pipeline is not None else None
        limit, redact = (policy.limit_bytes, policy.redact) if policy is not None else (None, None)
        if isinstance(exc, RunAborted):
            error = error_record(exc, stack=False, redact=redact)
            error["reason"] = str(exc.reason)
            error["node_id"] = None
            return RunStatus.ABORTED, error
        if exc is not None:
            error = error_record(exc, limit_chars=limit, redact=redact)
            error["node_id"] = self._failing_node(exc)
            return RunStatus.FAILED, error
        if self._failure is not None:
            failure, node_id = self._failure
            error = error_record(failure, limit_chars=limit, redact=redact)
            error["node_id"] = node_id
            return RunStatus.FAILED, error
        return RunStatus.SUCCEEDED, None


run = Run
"""``flowledger.run(workflow_id, ...)``: start recording one run; a (sync or async) context manager."""
