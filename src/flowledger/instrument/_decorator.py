"""``@flowledger.node``: record every call of a function as a node attempt.

One decorator for sync and async functions, bare or with options; the
function keeps its signature (``functools.wraps``, ``ParamSpec``). The
recorded input is the call's arguments by name (or the one positional
argument alone); an ``effect`` is simulated in a dry run and, with the local
guard on, a repeated identical effect returns its recorded output.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, overload

from flowledger._wire import CaptureMode
from flowledger.instrument._full_capture import capture_mode
from flowledger.instrument._node import NodeAttempt
from flowledger.instrument._pipeline import pipeline

__all__ = ["node"]

P = ParamSpec("P")
R = TypeVar("R")


def _input_builder(fn: Callable[..., Any]) -> Callable[[tuple[Any, ...], dict[str, Any]], Any]:
    """How a call's arguments become the recorded input.

    One positional argument and no keywords: that value. Otherwise a mapping
    of parameter names to values (``args`` for extra positional ones).
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

    def build(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        args = args[offset:]
        if len(args) == 1 and not kwargs:
            return args[0]
        if not args and not kwargs:
            return None
        out = dict(zip(names, args, strict=False))
        if len(args) > len(names):
            out["args"] = list(args[len(names) :])
        out.update(kwargs)
        return out

    return build


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
    recorded and returns None without running. ``capture="full"`` also records
    the complete output, content-addressed (None: as the run says).
    """
    mode = capture_mode(capture)

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        node_id = id or func.__name__
        build = _input_builder(func)

        if inspect.iscoroutinefunction(func):
            async_func: Callable[P, Awaitable[Any]] = func

            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                if pipeline().disabled:
                    return await async_func(*args, **kwargs)
                with NodeAttempt(
                    node_id,
                    input=build(args, kwargs),
                    effect=effect,
                    capture_input=capture_input,
                    capture_output=capture_output,
                    capture=mode,
                ) as a:
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
            if pipeline().disabled:
                return func(*args, **kwargs)
            with NodeAttempt(
                node_id,
                input=build(args, kwargs),
                effect=effect,
                capture_input=capture_input,
                capture_output=capture_output,
                capture=mode,
            ) as a:
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
    """For effects: a dry run simulates, and the guard returns a recorded output."""
    if not a.effect or a.run is None:
        return False, None
    if a.run.dry_run:
        a.simulate()
        return True, None
    hit, output = a.guard_hit()
    if hit:
        a.duplicate(output)
        return True, output
    return False, None
