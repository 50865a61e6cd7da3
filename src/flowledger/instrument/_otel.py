"""The OpenTelemetry bridge: every run and node attempt is a span.

Two cases, decided per span:

- The application installed a TracerProvider (an SDK one, with its own
  exporters). Runs and nodes become real spans of that provider, so they
  go wherever the application's other spans go.
- No provider is installed. flowledger never installs one globally (doing so
  would capture every span of the process). The hot path only makes a span
  *context* (ids) and makes it current, so auto-instrumented libraries nest
  their spans under the node; the sender's worker builds and exports the
  finished spans from the run's events, to the receiver or to the OTLP
  endpoint set by ``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT``.

Either way the current OTel context carries the node's span while it runs.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, Final, cast

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import (
    INVALID_SPAN,
    INVALID_SPAN_CONTEXT,
    NonRecordingSpan,
    ProxyTracerProvider,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from flowledger._version import __version__
from flowledger.instrument._config import Settings

__all__ = [
    "SpanScope",
    "app_tracer",
    "attach_context",
    "context_from_traceparent",
    "detach_context",
    "foreign_parent_sampled",
    "format_traceparent",
    "inject",
    "traceparent",
]

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NO_STATE: Final = TraceState()
_EMPTY: Final = otel_context.Context()
_random_bits: Final = random.getrandbits
_W3C = TraceContextTextMapPropagator()
_INVALID_PROVIDERS = (ProxyTracerProvider, trace.NoOpTracerProvider)
_LOOK_UP: Final = object()
"""SpanScope's default: look up the application's tracer now."""
_tracer_cache: dict[int, trace.Tracer | object | None] = {}
"""The application's tracer (None: it makes no spans) by the id of the provider it came from."""
_SPAN_KEY: Final = next(iter(trace.set_span_in_context(trace.INVALID_SPAN, otel_context.Context())))
"""The key a context holds its current span under (read from OTel's own ``set_span_in_context``)."""
_Parent = tuple[bool, int, int, TraceFlags, TraceState]
"""What a span takes from its parent's SpanContext: valid, trace id, span id, flags, state."""
_last_parent: tuple[SpanContext, _Parent] = (INVALID_SPAN_CONTEXT, (False, 0, 0, _SAMPLED, _NO_STATE))
"""The last parent read (a run's nodes share one): its fields without reading the properties again."""


_span_types: set[type] = set()
"""The classes of current spans seen so far that are OTel Spans (``isinstance`` on the abstract class is slow)."""


def _parent_of(ctx: otel_context.Context) -> tuple[SpanContext, _Parent]:
    """The SpanContext of the span current in ``ctx``, and its fields (what ``get_current_span`` finds, cheaper)."""
    global _last_parent
    span = ctx.get(_SPAN_KEY)
    if type(span) in _span_types:  # a class seen before: no check against the abstract class again
        span_ctx = cast(trace.Span, span).get_span_context()
    elif isinstance(span, trace.Span):
        _span_types.add(type(span))
        span_ctx = span.get_span_context()
    else:
        span_ctx = INVALID_SPAN_CONTEXT
    last = _last_parent  # one read: another thread may replace it meanwhile
    if last[0] is span_ctx:
        return last
    fields = (span_ctx.is_valid, span_ctx.trace_id, span_ctx.span_id, span_ctx.trace_flags, span_ctx.trace_state)
    _last_parent = last = (span_ctx, fields)
    return last


class _ContextSpan(NonRecordingSpan):
    """A node's span when no application tracer makes one: ids made current, its SpanContext built when asked for.

    Most nodes have no child that reads it, so most never build it.
    """

    def __init__(self, trace_id: int, span_id: int, flags: TraceFlags, state: TraceState) -> None:
        # fields, not a tuple: one object fewer for the garbage collector to walk while the event is queued
        self._trace_id = trace_id
        self._span_id = span_id
        self._flags = flags
        self._state = state
        self._context: SpanContext | None = None  # type: ignore[assignment]

    def get_span_context(self) -> SpanContext:
        ctx = self._context
        if ctx is None:  # two threads asking at once build equal contexts
            ctx = self._context = SpanContext(self._trace_id, self._span_id, False, self._flags, self._state)
        return ctx

    def __repr__(self) -> str:
        return f"NonRecordingSpan({self.get_span_context()!r})"


def _app_tracer() -> trace.Tracer | None:
    """The application's tracer, or None when it installed no provider, or one that makes no spans: the OTel SDK's
    ``TracerProvider`` hands out a ``NoOpTracer`` under ``OTEL_SDK_DISABLED=true``, whose spans all have the
    invalid (all-zero) ids."""
    provider = trace.get_tracer_provider()
    if type(provider) in _INVALID_PROVIDERS:
        return None
    key = id(provider)
    tracer = _tracer_cache.get(key, _LOOK_UP)
    if tracer is _LOOK_UP:
        made = provider.get_tracer("flowledger", __version__)
        tracer = None if isinstance(made, trace.NoOpTracer) else made
        _tracer_cache.clear()
        _tracer_cache[key] = tracer
    return cast(trace.Tracer | None, tracer)


def app_tracer(settings: Settings) -> trace.Tracer | None:
    """The application's tracer for flowledger spans; None when it installed no provider or ``settings`` say no."""
    return _app_tracer() if settings.otel_app_provider else None


def context_from_traceparent(value: str | None) -> otel_context.Context | None:
    """Parse a W3C ``traceparent`` header into an OTel context (None if invalid)."""
    if not value:
        return None
    ctx = _W3C.extract({"traceparent": value})
    span_ctx = trace.get_current_span(ctx).get_span_context()
    return ctx if span_ctx.is_valid else None


def foreign_parent_sampled(parent: otel_context.Context | None) -> bool | None:
    """The sampled flag of the span current in ``parent`` (else in the current context) when it is valid and not
    flowledger's own: a remote caller's (a ``traceparent`` continued), or the application's. None otherwise."""
    span = trace.get_current_span(parent if parent is not None else otel_context.get_current())
    if isinstance(span, _ContextSpan):
        return None
    span_ctx = span.get_span_context()
    return span_ctx.trace_flags.sampled if span_ctx.is_valid else None


def format_traceparent(trace_id: str, span_id: str, *, sampled: bool = True) -> str:
    """A W3C ``traceparent`` for a span given by its hex ids."""
    return f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"


def attach_context(ctx: otel_context.Context) -> object:
    """Make ``ctx`` the current OTel context; returns the token for :func:`detach_context`."""
    return otel_context.attach(ctx)


def detach_context(token: object) -> None:
    """Restore the OTel context from before :func:`attach_context`."""
    otel_context.detach(token)  # type: ignore[arg-type]


def traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, or None outside any span."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier.get("traceparent")


def inject(headers: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Add the current trace context (``traceparent``, ``tracestate``) to ``headers``."""
    propagate.inject(headers)
    return headers


class SpanScope:
    """One run's or node attempt's span, current while the scope is entered.

    ``enter()`` makes the span current; ``exit()`` restores the previous
    context and, for a real span, sets its status and ends it. The ids are
    kept as numbers and written as hex only when read (mostly by the
    sender's worker, off the workflow's thread).
    """

    __slots__ = ("_base", "_parent_id", "_span", "_span_id", "_token", "_trace_id", "real")

    def __init__(
        self,
        name: str,
        parent: otel_context.Context | None = None,
        attributes: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
        tracer: trace.Tracer | object | None = _LOOK_UP,
        span_id: str | None = None,
    ) -> None:
        """``span_id`` (16 hex digits) is used when no application tracer makes the span (whose SDK picks ids)."""
        # the context enter() makes the span current in, read once here (None: the one current then)
        base = otel_context.get_current() if parent is None else None
        parent_valid, parent_trace_id, parent_id, flags, state = _parent_of(parent or base or _EMPTY)[1]
        if tracer is _LOOK_UP:
            tracer = _app_tracer()
        span: trace.Span
        real = False
        if tracer is not None:  # a Tracer (an isinstance check against the ABC costs more than the span)
            attrs = _attrs(attributes() if callable(attributes) else attributes)
            span = cast(trace.Tracer, tracer).start_span(name, context=parent, kind=SpanKind.INTERNAL, attributes=attrs)
            ctx = span.get_span_context()
            # A tracer that makes no spans (a disabled or no-op SDK, whatever the reason) gives the invalid span,
            # or the parent's own (OTel's NoOpTracer hands back the current span): all-zero ids would merge every
            # run into one trace, the parent's every node into one span. The SDK's own ids are used instead, and
            # its own export (when on) sends the span.
            real = ctx.is_valid and not (parent_valid and ctx.span_id == parent_id)
            if real:
                self._trace_id = ctx.trace_id
                self._span_id = ctx.span_id
        self.real = real
        if not real:
            own_id = self._span_id = int(span_id, 16) if span_id else _random_bits(64) or 1
            if parent_valid:  # same trace, and the caller's sampling decision and trace state
                self._trace_id = parent_trace_id
                span = _ContextSpan(parent_trace_id, own_id, flags, state)
            else:
                trace_id = self._trace_id = _random_bits(128) or 1
                span = _ContextSpan(trace_id, own_id, _SAMPLED, _NO_STATE)
        self._span = span
        self._base = base
        self._token: object | None = None
        self._parent_id = parent_id if parent_valid else None

    @property
    def trace_id(self) -> str:
        """The trace id, 32 hex digits."""
        return f"{self._trace_id:032x}"

    @property
    def span_id(self) -> str:
        """The span id, 16 hex digits."""
        return f"{self._span_id:016x}"

    @property
    def parent_span_id(self) -> str | None:
        """The parent span's id (16 hex digits), or None for a root span."""
        parent = self._parent_id
        return None if parent is None else f"{parent:016x}"

    @staticmethod
    def ids_of(ctx: otel_context.Context) -> tuple[str, str]:
        """The hex ``(trace_id, span_id)`` of the span current in ``ctx``."""
        span_ctx = trace.get_current_span(ctx).get_span_context()
        return f"{span_ctx.trace_id:032x}", f"{span_ctx.span_id:016x}"

    def enter(self) -> None:
        base = self._base if self._base is not None else otel_context.get_current()
        # what trace.set_span_in_context makes (a copy of the context with the span set), without its two calls
        self._token = otel_context.attach(otel_context.Context({**base, _SPAN_KEY: self._span}))

    def leave(self) -> None:
        """Stop being the current span without ending it (a forked child leaving its parent's span: the parent
        ends and exports it)."""
        token, self._token = self._token, None
        if token is not None:
            otel_context.detach(token)  # type: ignore[arg-type]

    def exit(
        self,
        error: BaseException | None = None,
        attributes: Mapping[str, Any] | None = None,
        record: Mapping[str, Any] | None = None,
    ) -> None:
        """End the span; with ``error``, its status is ERROR and it gets OpenTelemetry's ``exception`` event.

        ``record`` is the error as flowledger recorded it (``{type, message, stack}``, secrets redacted): the
        event and the status then carry it, never the exception's own text, which may hold a secret.
        """
        token, self._token = self._token, None
        if token is not None:
            otel_context.detach(token)  # type: ignore[arg-type]
        if not self.real:
            # The ids stay (events are written from them later); the span object goes now, not when the
            # queued event is written: fewer objects for the garbage collector to walk meanwhile.
            self._span = INVALID_SPAN
            self._base = None
            return
        span = self._span
        if attributes:
            span.set_attributes(_attrs(attributes))
        if error is not None and record is not None:
            kind, message = str(record.get("type", type(error).__name__)), str(record.get("message", ""))
            span.add_event(
                "exception",
                {"exception.type": kind, "exception.message": message, "exception.stacktrace": record.get("stack", "")},
            )
            span.set_status(Status(StatusCode.ERROR, f"{kind}: {message}"))
        elif error is not None:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        span.end()

    def add_attributes(self, attributes: Mapping[str, Any]) -> None:
        if self.real:
            self._span.set_attributes(_attrs(attributes))


def _attrs(values: Mapping[str, Any] | None) -> dict[str, Any]:
    if not values:
        return {}
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        out[key] = value if isinstance(value, str | bool | int | float) else str(value)
    return out
