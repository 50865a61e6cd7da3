"""``@flowledger.node``: record every call of a function as a node attempt.

One decorator for sync and async functions, bare or with options; the
function keeps its signature (``functools.wraps``, ``ParamSpec``). The
recorded input is the call's arguments by name (or the one positional
argument alone, unless its parameter's name looks secret: see
``_input_builder``); an ``effect`` is simulated in a dry run (recorded or
not: with flowledger disabled too) and, with the local guard on, a
repeated identical effect returns its recorded output.

The node's id is ``id=``, else the function's ``__name__``: a
``functools.partial`` takes its function's, a callable object its class's.
Arguments are checked when decorating (UsageError naming the one that
cannot be used), so that every record of the node is one the receiver takes.

A generator function (sync or async) is a node that works while its caller
iterates: the attempt starts at the first step and ends when the generator
does, so its duration runs from the first step to the end. The node is the
current node during each of its steps (its cost, logs and nested nodes are
its own) and only then: the caller's code between steps is not part of it.
Its output is the list of the items it yielded, captured as each is yielded
and cut as any payload is (past the limit, later items are counted, not
captured); the attribute ``flowledger.generator.items`` counts them. An
exception raised inside fails the attempt (its record has the error, not
the items). A caller that stops early
(``close()``, ``aclose()``, a ``break``) ends it as succeeded with the items
so far and the attribute ``flowledger.generator.closed_early``: stopping
is how a consumer says it has enough, not a failure of the node.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from reprlib import repr as _q  # quoted, and cut short: a message never carries a whole value
from typing import Any, Final, ParamSpec, TypeVar, overload

from flowledger._exceptions import UsageError
from flowledger._wire import MARKER_KEY, CaptureMode
from flowledger.instrument import _pipeline
from flowledger.instrument._node import NodeAttempt
from flowledger.instrument._pipeline import Pipeline, pipeline
from flowledger.instrument._run import MAX_ID_CHARS, in_dry_run
from flowledger.instrument.capture import RawJSON, capture, capture_mode
from flowledger.instrument.capture._bounded import cut
from flowledger.instrument.capture._jsonable import encode
from flowledger.instrument.capture._redaction import is_secret

__all__ = ["node"]

P = ParamSpec("P")
R = TypeVar("R")


def _input_builder(fn: Callable[..., Any]) -> Callable[[tuple[Any, ...], dict[str, Any]], tuple[Any, Any]]:
    """How a call's arguments become the recorded input, and the input an effect's idempotency key is made of.

    One positional argument and no keywords: that value, unless the name of
    its parameter looks secret (``login(password)``): then the record is the
    mapping ``{name: value}``, as two arguments give, whose value the capture
    redacts (``{"password": "[REDACTED]"}``), while the key is still made of
    the value alone. The key never depends on the redaction patterns: with
    other patterns (another process, a ``configure()``) the same call must
    have the same key, or the guard would carry the effect out again.
    Otherwise both are a mapping of parameter names to values (``args`` for
    extra positional ones). The name's verdict is kept per redaction pattern
    (``configure()`` may change it): a call reads it, it does not search the
    name again.
    """
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        params = []
    names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if names and names[0] in ("self", "cls"):
        names = names[1:]
        offset = 1
    else:
        offset = 0
    first = names[0] if names else None
    # (the pipeline, whether ``first`` looks secret to its pattern): a pipeline's pattern is fixed for its life,
    # configure() makes a new one; held until the next call, an old one is not kept longer
    verdict: tuple[Pipeline | None, bool] = (None, False)

    def build(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
        nonlocal verdict
        args = args[offset:]
        if len(args) == 1 and not kwargs:
            value = args[0]
            if first is not None:
                current = _pipeline._current  # the global, not pipeline(): one look-up on the hot path
                owner, secret = verdict
                if current is not owner or current is None:
                    current = pipeline()
                    secret = is_secret(first, current.policy.redact)
                    verdict = (current, secret)  # one assignment: another thread reads a pair that belongs together
                if secret:
                    return {first: value}, value
            return value, value
        if not args and not kwargs:
            return None, None
        out = dict(zip(names, args, strict=False))
        if len(args) > len(names):
            out["args"] = list(args[len(names) :])
        out.update(kwargs)
        return out, out

    return build


def _default_id(func: Callable[..., Any]) -> str:
    """A node's id when none is given: the function's name; a partial's function's; a callable object's class's."""
    name = getattr(func, "__name__", None)
    if isinstance(name, str) and name:
        return name
    if isinstance(func, functools.partial):
        return _default_id(func.func)
    return type(func).__name__


def _checked_id(node_id: object, what: str) -> str:
    """A node id as the wire format takes it (a string of 1 to ``MAX_ID_CHARS``); UsageError saying what to change."""
    if not isinstance(node_id, str):
        raise UsageError(f"flowledger.node(): {what} must be a string, not {type(node_id).__name__}.")
    if not 0 < len(node_id) <= MAX_ID_CHARS:
        raise UsageError(
            f"flowledger.node(): {what} {_q(node_id)} is {len(node_id)} characters long; a node id is 1 to "
            f"{MAX_ID_CHARS}: give one with id=..."
        )
    return node_id


def _probe(func: Callable[..., Any]) -> Callable[..., Any]:
    """What says whether ``func`` is a coroutine or generator function: itself, or a callable object's ``__call__``."""
    if inspect.isroutine(func) or isinstance(func, functools.partial | type):
        return func
    return getattr(func, "__call__", func)  # noqa: B004 - the object's own method, to inspect


@overload
def node(fn: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def node(
    *,
    id: str | None = None,
    effect: bool = False,
    capture_input: bool = True,
    capture_output: bool = True,
    capture: CaptureMode | str | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def node(
    fn: Callable[P, R] | None = None,
    /,
    *,
    id: str | None = None,
    effect: bool = False,
    capture_input: bool = True,
    capture_output: bool = True,
    capture: CaptureMode | str | None = None,
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Record every call of a function (sync or async) as a node attempt.

    Bare (``@flowledger.node``) or with options (``@flowledger.node(id="price",
    effect=True)``). An ``effect`` node is simulated in a dry run: it is
    recorded and returns None (a generator: yields nothing) without running,
    and so it is when flowledger is disabled or the run was not recorded.
    ``capture="full"`` also records the complete output, content-addressed
    (None: as the run says). A generator function's attempt lasts while its
    caller iterates, its output the items it yields (see the module).
    """
    given: object = fn  # whatever the caller's types said
    if given is not None and not callable(given):
        if isinstance(given, str):  # @flowledger.node("price"): an easy mistake
            raise UsageError(f"flowledger.node() takes the node's id by name: write @flowledger.node(id={_q(given)}).")
        raise UsageError(f"flowledger.node() decorates a function, not {type(given).__name__}.")
    if id is not None:
        _checked_id(id, "id")
    try:
        mode = capture_mode(capture)
    except UsageError as exc:
        raise UsageError(f"flowledger.node(): {exc}.") from None

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        decorated: object = func  # whatever the caller's types said
        if not callable(decorated):
            raise UsageError(f"flowledger.node() decorates a function, not {type(decorated).__name__}.")
        node_id = id if id is not None else _checked_id(_default_id(func), "the name it takes as its id")
        build = _input_builder(func)
        probe = _probe(func)

        def attempt(args: tuple[Any, ...], kwargs: dict[str, Any]) -> NodeAttempt:
            recorded, key_input = build(args, kwargs)
            return NodeAttempt(
                node_id,
                input=recorded,
                key_input=key_input,
                effect=effect,
                capture_input=capture_input,
                capture_output=capture_output,
                capture=mode,
            )

        if inspect.isasyncgenfunction(probe):
            return _async_generator_node(func, attempt, effect=effect)  # type: ignore[arg-type,return-value]
        if inspect.isgeneratorfunction(probe):
            return _generator_node(func, attempt, effect=effect)  # type: ignore[arg-type,return-value]

        if inspect.iscoroutinefunction(probe):
            async_func: Callable[P, Awaitable[Any]] = func  # type: ignore[assignment]

            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                if pipeline().disabled:  # not recorded; a dry run still simulates its effects
                    if effect and in_dry_run():
                        return None
                    return await async_func(*args, **kwargs)
                with attempt(args, kwargs) as a:
                    if effect:
                        short, value = _short_circuit(a)
                        if short:
                            return value
                    result = await async_func(*args, **kwargs)
                    a.set_output(result)
                    return result

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if pipeline().disabled:  # not recorded; a dry run still simulates its effects
                if effect and in_dry_run():
                    return None  # type: ignore[return-value]
                return func(*args, **kwargs)
            with attempt(args, kwargs) as a:
                if effect:
                    short, value = _short_circuit(a)
                    if short:
                        return value  # type: ignore[no-any-return]
                result = func(*args, **kwargs)
                a.set_output(result)
                return result

        return wrapper

    if fn is not None:
        return decorate(fn)
    return decorate


def _short_circuit(a: NodeAttempt) -> tuple[bool, Any]:
    """For effects: a dry run simulates, and the guard returns a recorded output.

    An attempt that is not recorded (its run did not start) reads the dry run from the context.
    """
    if not a.effect:
        return False, None
    if a.run is None:
        return in_dry_run(), None
    if a.run.dry_run:
        a.simulate()
        return True, None
    hit, output = a.guard_hit()
    if hit:
        a.duplicate(output)
        return True, output
    return False, None


ITEMS_ATTRIBUTE: Final = "flowledger.generator.items"
"""The attribute of a generator node's attempt that counts the items it yielded."""
CLOSED_EARLY_ATTRIBUTE: Final = "flowledger.generator.closed_early"
"""The attribute set on a generator node's attempt that its caller stopped before the end."""


class _Yielded:
    """The output of a generator node: its items, captured as they are yielded, up to the capture limit."""

    __slots__ = ("_attempt", "_over", "_parts", "_size", "count", "whole")

    def __init__(self, attempt: NodeAttempt) -> None:
        self._attempt = attempt
        self._parts: list[str] = []
        self._size = 1  # the brackets, less the comma the first item does not have
        self._over = False
        self.count = 0
        self.whole: list[Any] | None = [] if attempt.needs_whole_output else None
        """Every item, when the output is recorded in full or kept by the guard (``set_output`` captures it)."""

    def add(self, item: Any) -> None:
        """Count ``item`` and capture it while the output is within the limit; never raises."""
        self.count += 1
        try:
            self._add(item)
        except Exception as exc:  # telemetry never breaks the iteration
            pipeline().internal_error("generator_output", exc)

    def _add(self, item: Any) -> None:
        if self.whole is not None:
            self.whole.append(item)
            return
        policy = self._attempt.output_policy
        if policy is None or self._over:
            return
        record, size = capture(item, policy, nested=1)  # inside the output list
        if type(record) is RawJSON:
            self._parts.append(record.json())
        else:
            self._parts.append(encode(record))
            if isinstance(record, dict) and record.get(MARKER_KEY) == "truncated":  # its size: the item's, at least
                size = record.get("original_bytes") or record.get("original_bytes_at_least") or size
        self._size += size + 1
        self._over = self._size > policy.limit_bytes

    def finish(self, *, failed: bool, closed_early: bool) -> None:
        """Record the attributes and, unless the attempt failed, the output (before the attempt ends); never raises."""
        try:
            self._finish(failed=failed, closed_early=closed_early)
        except Exception as exc:
            pipeline().internal_error("generator_output", exc)

    def _finish(self, *, failed: bool, closed_early: bool) -> None:
        a = self._attempt
        a.set_attribute(ITEMS_ATTRIBUTE, self.count)
        if closed_early:
            a.set_attribute(CLOSED_EARLY_ATTRIBUTE, True)
        if failed:
            return
        if self.whole is not None:
            a.set_output(self.whole)
            return
        policy = a.output_policy
        if policy is None:
            return
        text = "[" + ",".join(self._parts) + "]"
        if not self._over:
            a.set_output_record(RawJSON(text), len(text.encode("utf-8")))
        else:  # its size is known from below: the items past the limit were counted, not captured
            a.set_output_record(cut(text, self._size, policy.limit_bytes, exact=False), policy.limit_bytes + 96)


def _generator_node(
    func: Callable[..., Generator[Any, Any, Any]],
    attempt: Callable[[tuple[Any, ...], dict[str, Any]], NodeAttempt],
    *,
    effect: bool,
) -> Callable[..., Generator[Any, Any, Any]]:
    """The wrapper of a generator function: one attempt from its first step to its end (see the module)."""

    @functools.wraps(func)
    def generator_wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        if pipeline().disabled:  # not recorded; a dry run still simulates its effects (it yields nothing)
            if effect and in_dry_run():
                return None
            return (yield from func(*args, **kwargs))
        a = attempt(args, kwargs)
        context = contextvars.copy_context()  # the attempt's own: current in its steps, never in the caller's code
        context.run(a.__enter__)  # RunAborted (a run past its limits) reaches the caller at the first step
        yielded = _Yielded(a)
        failure: BaseException | None = None
        closed_early = False
        try:
            if a.effect:
                short, output = context.run(_short_circuit, a)
                if short:  # simulated (nothing), or the guard's duplicate: the items recorded then
                    for item in output if isinstance(output, list) else ():
                        yielded.add(item)
                        yield item
                    return None
            return (yield from _steps(func(*args, **kwargs), context, yielded))
        except GeneratorExit:
            closed_early = True
            raise
        except BaseException as exc:
            failure = exc
            raise
        finally:
            try:
                yielded.finish(failed=failure is not None, closed_early=closed_early)
            finally:
                context.run(a.__exit__, None if failure is None else type(failure), failure, None)

    return generator_wrapper


def _steps(gen: Generator[Any, Any, Any], context: contextvars.Context, yielded: _Yielded) -> Generator[Any, Any, Any]:
    """``yield from gen`` with each of its steps run in ``context``; each item goes to ``yielded``."""
    value: Any = None
    thrown: BaseException | None = None
    while True:
        try:
            item = context.run(gen.send, value) if thrown is None else context.run(gen.throw, thrown)
        except StopIteration as stop:
            return stop.value
        yielded.add(item)
        try:
            value, thrown = (yield item), None
        except GeneratorExit:
            context.run(gen.close)
            raise
        except BaseException as exc:  # thrown in by the caller: into the generator, as ``yield from`` does
            value, thrown = None, exc


def _async_generator_node(
    func: Callable[..., AsyncGenerator[Any, Any]],
    attempt: Callable[[tuple[Any, ...], dict[str, Any]], NodeAttempt],
    *,
    effect: bool,
) -> Callable[..., AsyncGenerator[Any, Any]]:
    """The wrapper of an async generator function: one attempt from its first step to its end (see the module)."""

    @functools.wraps(func)
    async def async_generator_wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        if pipeline().disabled:  # not recorded; a dry run still simulates its effects (it yields nothing)
            if effect and in_dry_run():
                return
            a: NodeAttempt | None = None
            context: contextvars.Context | None = None
        else:
            a = attempt(args, kwargs)
            context = contextvars.copy_context()
            context.run(a.__enter__)
        yielded = None if a is None else _Yielded(a)
        failure: BaseException | None = None
        closed_early = False
        try:
            if a is not None and context is not None and a.effect:
                short, output = context.run(_short_circuit, a)
                if short and yielded is not None:  # simulated (nothing), or the guard's duplicate
                    for item in output if isinstance(output, list) else ():
                        yielded.add(item)
                        yield item
                    return
            agen = func(*args, **kwargs)
            value: Any = None
            thrown: BaseException | None = None
            while True:
                step = agen.asend(value) if thrown is None else agen.athrow(thrown)
                try:
                    item = await (step if context is None else _InContext(step, context))
                except StopAsyncIteration:
                    return
                if yielded is not None:
                    yielded.add(item)
                try:
                    value, thrown = (yield item), None
                except GeneratorExit:
                    close = agen.aclose()
                    await (close if context is None else _InContext(close, context))
                    raise
                except BaseException as exc:  # thrown in by the caller: into the generator
                    value, thrown = None, exc
        except GeneratorExit:
            closed_early = True
            raise
        except BaseException as exc:
            failure = exc
            raise
        finally:
            if a is not None and context is not None and yielded is not None:
                try:
                    yielded.finish(failed=failure is not None, closed_early=closed_early)
                finally:
                    context.run(a.__exit__, None if failure is None else type(failure), failure, None)

    return async_generator_wrapper


class _InContext:
    """Awaits ``awaitable`` with each of its steps run in ``context``, as a task runs its coroutine in its own."""

    __slots__ = ("_awaitable", "_context")

    def __init__(self, awaitable: Awaitable[Any], context: contextvars.Context) -> None:
        self._awaitable = awaitable
        self._context = context

    def __await__(self) -> Generator[Any, Any, Any]:
        steps = self._awaitable.__await__()
        run = self._context.run
        value: Any = None
        thrown: BaseException | None = None
        while True:
            try:
                signal = run(steps.send, value) if thrown is None else run(steps.throw, thrown)
            except StopIteration as stop:
                return stop.value
            try:
                value, thrown = (yield signal), None
            except GeneratorExit:
                run(steps.close)
                raise
            except BaseException as exc:  # a cancellation, say: into the awaited steps
                value, thrown = None, exc
