"""Node functions the codegen tests' definitions call (sync and async)."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import threading
import time
from collections import Counter
from typing import Any

import flowledger

_calls: Counter[str] = Counter()
_lock = threading.Lock()


def calls(key: str) -> int:
    """How many times a counted function ran for ``key``."""
    with _lock:
        return _calls[key]


def _count(key: str) -> int:
    with _lock:
        _calls[key] += 1
        return _calls[key]


def echo(value: Any, **kwargs: Any) -> Any:
    """Return the input, with the keyword arguments if there are any."""
    return {"input": value, **kwargs} if kwargs else value


async def aecho(value: Any) -> Any:
    """Async: return the input."""
    await asyncio.sleep(0)
    return value


def double(value: int) -> int:
    """Twice the input."""
    return value * 2


def total(values: dict[str, Any]) -> Any:
    """Sum of the values of a mapping input."""
    return sum(v for v in values.values() if isinstance(v, int | float))


def sleepy(value: Any, *, delay_s: float = 0.3) -> Any:
    """Sync: sleep, then return the input."""
    time.sleep(delay_s)
    return value


async def asleepy(value: Any, *, delay_s: float = 0.3) -> Any:
    """Async: sleep, then return the input."""
    await asyncio.sleep(delay_s)
    return value


def flaky(value: Any, *, key: str, failures: int) -> Any:
    """Fail the first ``failures`` calls for ``key``, then return the input."""
    if _count(key) <= failures:
        raise ConnectionError(f"flaky failure {calls(key)} of {failures}")
    return value


def boom(value: Any) -> Any:
    """Always fail."""
    raise ValueError(f"boom on {value!r}")


def item_boom(value: Any) -> Any:
    """Fail for the item 3; return the item otherwise."""
    if value == 3:
        raise ValueError("item 3 is bad")
    return value


def counted_effect(value: Any, *, key: str) -> Any:
    """An effect: counts its real executions."""
    _count(key)
    return {"done": value}


def is_positive(value: Any) -> bool:
    """``when`` predicate: the input is a positive number."""
    return isinstance(value, int | float) and value > 0


def read_env(value: Any, *, secret: str) -> Any:
    """Return a digest-free proof the secret arrived (its length) - never the secret."""
    return {"secret_length": len(secret), "matches": secret == os.environ.get("FLOWLEDGER_TEST_SECRET")}


def spend(value: Any, *, usd: float) -> Any:
    """Report a cost."""
    flowledger.cost(usd=usd, tokens=10)
    return value


async def spend_later(value: Any, *, usd: float, delay_s: float) -> Any:
    """Async: sleep, then report a cost (other nodes have started meanwhile)."""
    await asyncio.sleep(delay_s)
    flowledger.cost(usd=usd, tokens=10)
    return value


not_a_function = 42


async def cancel_myself(value: Any) -> Any:
    """Cancel the task running this node (a node that is cancelled from inside)."""
    task = asyncio.current_task()
    assert task is not None
    task.cancel()
    await asyncio.sleep(1)
    return value


def chatty(value: Any) -> Any:
    """Log a line here (in the runtime's worker thread) and one from a thread of its own started in context."""
    log = logging.getLogger("tests.workflow.nodes")
    log.warning("working on %s", value)

    def helper() -> None:
        log.warning("helper for %s", value)

    thread = threading.Thread(target=flowledger.instrument.in_context(helper))
    thread.start()
    thread.join()
    return value


def thread(value: Any) -> threading.Thread:
    """Sync: the worker thread that ran the call."""
    return threading.current_thread()


marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")


async def mark(value: Any) -> Any:
    """Async: set ``marker`` in the node's context (never reset), then return the input."""
    marker.set(f"set by a node on {value!r}")
    return value


async def read_mark(value: Any) -> str:
    """Async: what ``marker`` holds in this node's context."""
    await asyncio.sleep(0)
    return marker.get()


async def busy(value: Any, *, delay_s: float = 0.002) -> Any:
    """Async, but never waits: holds the event loop for ``delay_s``, then returns the input plus one."""
    time.sleep(delay_s)
    return value + 1


async def cancel_my_task_and_return(value: Any) -> Any:
    """Ask the running task to cancel, then return without waiting (the request is left pending)."""
    task = asyncio.current_task()
    assert task is not None
    task.cancel()
    return value


def circular(value: Any) -> Any:
    """A list that contains itself (JSON cannot hold it)."""
    out: list[Any] = [value]
    out.append(out)
    return out


def tuple_keys(value: Any) -> Any:
    """A dict whose key is a tuple (JSON cannot hold it)."""
    return {(1, 2): value}


def huge_int(value: Any) -> int:
    """10**5000: more digits than ``str()`` converts by default."""
    return 10**5000


def not_a_number(value: Any) -> float:
    """NaN, which JSON has no form for."""
    return float("nan")


def surrogate(value: Any) -> str:
    """A string with a lone surrogate (no UTF-8 form)."""
    return f"lone \ud800 {value}"


def surrogate_error(value: Any) -> Any:
    """Raise an error whose message is a lone surrogate."""
    raise ValueError("\ud800")


def announce_then_sleep(value: Any, *, delay_s: float) -> Any:
    """Sync: say on stderr that the node started (a test waits for it), then sleep ``delay_s``."""
    import sys

    print("node started", file=sys.stderr, flush=True)
    time.sleep(delay_s)
    return value


async def announce_then_spin(value: Any, *, limit_s: float) -> Any:
    """Async and CPU-bound on the event loop's thread: say on stderr that it started, then spin up to ``limit_s``.

    A SIGINT under Python's own handler raises KeyboardInterrupt in this loop, in the node's code.
    """
    import sys

    print("node started", file=sys.stderr, flush=True)
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        pass
    return value


def timed_out(value: Any) -> Any:
    """Sync: raise the TimeoutError of a call of its own that timed out (not a limit of the run's)."""
    raise TimeoutError(f"the upstream timed out on {value!r}")


async def atimed_out_once(value: Any, *, key: str) -> Any:
    """Async: the first call for ``key`` times out waiting on an upstream of its own; later calls return the input."""
    if _count(key) == 1:
        await asyncio.wait_for(asyncio.sleep(1), 0.001)
    return value


class Ambiguous:
    """A value whose truth cannot be told (as a pandas frame's): ``bool()`` of it raises."""

    def __bool__(self) -> bool:
        raise ValueError("the truth value of an Ambiguous is ambiguous")


def ambiguous(value: Any) -> Ambiguous:
    """A `when` predicate answering a value whose truth test raises."""
    return Ambiguous()


class Verdict:
    """A false `when` answer with a long repr (the reasons it gives)."""

    def __init__(self, why: str) -> None:
        self.why = why

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"Verdict(ok=False, why={self.why!r})"


def long_no(value: Any) -> Verdict:
    """A `when` predicate answering a false value whose repr is about 2,000 characters."""
    return Verdict("no line matches the catalogue: " + ", ".join(f"sku-{i}" for i in range(250)))
