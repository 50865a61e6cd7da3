"""Awaiting a coroutine in a context of its own, in the awaiting task: values, waits, errors, cancellation."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import pytest

from flowledger.workflow._in_context import InContext

where: contextvars.ContextVar[str] = contextvars.ContextVar("where", default="unset")


async def _set_wait_read(label: str, seen: list[str]) -> str:
    where.set(label)
    await asyncio.sleep(0.01)  # another task runs meanwhile, in its own context
    seen.append(where.get())
    return f"{label} done"


def test_the_coroutine_runs_in_the_given_context_and_returns_its_value() -> None:
    context = contextvars.copy_context()
    seen: list[str] = []

    async def outer() -> tuple[str, str]:
        where.set("outer")
        value = await InContext(_set_wait_read("inner", seen), context)
        return value, where.get()

    assert asyncio.run(outer()) == ("inner done", "outer")
    assert seen == ["inner"]
    assert context.run(where.get) == "inner"
    assert where.get() == "unset"


def test_two_coroutines_in_one_task_each_keep_their_own_context() -> None:
    first, second = contextvars.copy_context(), contextvars.copy_context()
    seen: list[str] = []

    async def outer() -> None:
        await InContext(_set_wait_read("first", seen), first)
        await InContext(_set_wait_read("second", seen), second)

    asyncio.run(outer())
    assert seen == ["first", "second"]
    assert (first.run(where.get), second.run(where.get)) == ("first", "second")


def test_an_exception_reaches_the_awaiting_task() -> None:
    async def fails() -> None:
        await asyncio.sleep(0)
        raise ValueError("from inside")

    async def outer() -> None:
        await InContext(fails(), contextvars.copy_context())

    with pytest.raises(ValueError, match="from inside"):
        asyncio.run(outer())


def test_a_cancellation_of_the_task_is_thrown_into_the_coroutine_in_its_context() -> None:
    context = contextvars.copy_context()
    seen: list[Any] = []

    async def waits() -> None:
        where.set("inner")
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError as cancelled:
            seen.append((where.get(), cancelled.args))
            raise

    async def outer() -> None:
        task = await _cancelled_soon(InContext(waits(), context), "stop")
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(outer())
    assert seen == [("inner", ("stop",))]


def test_a_coroutine_that_catches_the_cancellation_returns_its_value() -> None:
    async def shrugs() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return "kept going"
        return "slept"

    async def outer() -> str:
        task = await _cancelled_soon(InContext(shrugs(), contextvars.copy_context()))
        return str(await task)

    assert asyncio.run(outer()) == "kept going"


def test_closing_the_awaiting_coroutine_closes_the_inner_one_in_its_context() -> None:
    context = contextvars.copy_context()
    seen: list[str] = []

    async def suspended() -> None:
        where.set("inner")
        try:
            await asyncio.sleep(10)
        finally:
            seen.append(where.get())

    async def main() -> None:
        outer = _await(InContext(suspended(), context))
        outer.send(None)  # runs until the sleep's future is waited on
        outer.close()

    asyncio.run(main())
    assert seen == ["inner"]


async def _await(awaitable: InContext) -> Any:
    return await awaitable


def test_an_exception_thrown_in_is_not_the_context_of_the_coroutine_s_own_errors() -> None:
    """A cancellation thrown in and handled inside leaves no trace on a later error, as in a task of its own."""

    async def times_out_then_fails() -> None:
        try:
            async with asyncio.timeout(0.01):
                await asyncio.sleep(1)
        except TimeoutError:
            pass
        raise RuntimeError("after the timeout")

    async def outer() -> BaseException:
        try:
            await InContext(times_out_then_fails(), contextvars.copy_context())
        except RuntimeError as exc:
            return exc
        raise AssertionError("no error")

    error = asyncio.run(outer())
    assert error.__context__ is None


async def _cancelled_soon(awaitable: InContext, *message: str) -> asyncio.Task[Any]:
    """A task awaiting ``awaitable``, cancelled (with ``message``) once it has waited 10 ms."""
    task = asyncio.create_task(_await(awaitable))
    await asyncio.sleep(0.01)
    task.cancel(*message)
    return task
