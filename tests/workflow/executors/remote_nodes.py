"""Node functions the executor tests run on Celery workers: each says which process ran it."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import flowledger


def where(value: Any) -> dict[str, Any]:
    """The input and the pid of the process that ran the node."""
    return {"value": value, "pid": os.getpid()}


def square(value: int) -> dict[str, Any]:
    """The square of an item, and the pid that computed it."""
    time.sleep(0.02)  # long enough for several workers to share a map
    return {"value": value * value, "pid": os.getpid()}


def positive(value: Any) -> bool:
    """``when`` predicate."""
    return isinstance(value, int) and value > 0


def fail_until_marked(value: Any, *, marker: str) -> Any:
    """Fail the first call (leaving a marker file), succeed once the marker exists."""
    path = Path(marker)
    if not path.exists():
        path.write_text("failed once")
        raise ConnectionError("first attempt fails")
    return {"value": value, "pid": os.getpid()}


def hang_once(value: Any, *, marker: str, hang_s: float = 30.0) -> Any:
    """First call: write this process's pid to ``marker`` and hang (to be killed); later calls return at once."""
    path = Path(marker)
    if not path.exists():
        path.write_text(str(os.getpid()))
        time.sleep(hang_s)
    return {"value": value, "pid": os.getpid()}


def slow(value: Any, *, delay_s: float) -> Any:
    """Sleep, then return the input."""
    time.sleep(delay_s)
    return value


def spend(value: Any, *, usd: float) -> Any:
    """Report a cost from the worker."""
    flowledger.cost(usd=usd, tokens=5)
    return value


def effect(value: Any) -> Any:
    """An effect node (simulated in dry runs): changes the world."""
    return {"sent": value, "pid": os.getpid()}


def identity(value: Any) -> Any:
    """The input itself (the benchmark's node)."""
    return value


def counted_effect(value: Any, *, calls: str) -> Any:
    """An effect that appends a line to ``calls`` each time it runs (so a test can count the runs)."""
    with Path(calls).open("a") as out:
        out.write(f"{os.getpid()}\n")
    return {"sent": value}


def counted_set(value: Any, *, calls: str) -> Any:
    """Append a line to ``calls``, then return a set: a value JSON cannot hold."""
    with Path(calls).open("a") as out:
        out.write(f"{os.getpid()}\n")
    return {value}
