"""The executor seam: where a generated workflow's node attempts run.

The scheduler (:class:`~flowledger.workflow.Execution`) decides *what* runs
and when: the graph, ``when``, ``map``, retries with backoff, ``on_error``,
the run's deadline and budget. An :class:`Executor` decides *where* one
attempt runs. The attempt is recorded where it runs, by the SDK's
``attempt()`` hook, under the run's trace.

Executors are chosen by name at run time, with no regeneration: a
generated module's ``--executor NAME``, ``execute(..., executor=NAME)``, or
``FLOWLEDGER_EXECUTOR``. ``local`` (the default) runs attempts in this
process's event loop; ``celery`` sends them to Celery workers (its module,
and Celery itself, are imported only when it is chosen).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from flowledger._exceptions import ConfigError
from flowledger.workflow._attempts import AttemptHost, one_attempt
from flowledger.workflow._spec import Node

if TYPE_CHECKING:
    from flowledger.workflow._host import NodeHost

__all__ = ["DEFAULT_EXECUTOR", "EXECUTORS", "EXECUTOR_ENV", "Executor", "LocalExecutor", "executor_named"]

DEFAULT_EXECUTOR: Final = "local"
EXECUTOR_ENV: Final = "FLOWLEDGER_EXECUTOR"


@runtime_checkable
class Executor(Protocol):
    """Runs one attempt of a node somewhere and returns its output (or raises its error)."""

    name: str

    async def run_attempt(self, host: NodeHost, node: Node, value: Any, number: int, item: int | None) -> Any:
        """Run attempt ``number`` of ``node`` on ``value`` (item ``item`` of a map), recorded where it runs.

        Raises what the attempt raised (NodeTimeout, RunAborted, the node's
        own error); the scheduler retries per the node's policy.
        """
        ...


class LocalExecutor:
    """Runs attempts in this process: async functions on the event loop, sync ones in worker threads."""

    name = DEFAULT_EXECUTOR

    async def run_attempt(self, host: AttemptHost, node: Node, value: Any, number: int, item: int | None) -> Any:
        return await one_attempt(host, node, value, number, item)


def _celery() -> Executor:
    from flowledger.workflow.executors._celery import CeleryExecutor

    return CeleryExecutor.from_env()


EXECUTORS: Final[dict[str, Callable[[], Executor]]] = {
    DEFAULT_EXECUTOR: LocalExecutor,
    "celery": _celery,
}
"""Executor names and how to build each (an engine's module is imported when it is chosen)."""

_built: dict[str, Executor] = {}
_lock = threading.Lock()


def executor_named(name: str | None = None) -> Executor:
    """The executor called ``name`` (None: ``$FLOWLEDGER_EXECUTOR``, else ``local``), one per process.

    Raises ConfigError naming the known executors for a name that is not one,
    when the engine's package is not installed, and when a registered
    factory raises or returns something that is not an :class:`Executor`.
    """
    # An empty name given is refused, not taken for the default: only None means "not chosen".
    chosen = (name if name is not None else os.environ.get(EXECUTOR_ENV) or DEFAULT_EXECUTOR).strip().lower()
    make = EXECUTORS.get(chosen)
    if make is None:
        source = "--executor" if name is not None else EXECUTOR_ENV
        raise ConfigError(f"{source} {chosen!r} is not an executor: use one of {', '.join(sorted(EXECUTORS))}.")
    with _lock:
        executor = _built.get(chosen)
        if executor is None:
            executor = _built[chosen] = _load(chosen, make)
        return executor


def _load(name: str, make: Callable[[], Executor]) -> Executor:
    """Build the executor ``name`` with its factory; ConfigError when the factory fails or makes no Executor."""
    try:
        executor = make()
    except ConfigError:
        raise  # an engine's own message (a missing package) already says what to do
    except Exception as exc:
        raise ConfigError(
            f"the executor {name!r} cannot be loaded: {type(exc).__name__}: {exc} "
            f"(its factory in EXECUTORS is {_qualname(make)}; fix it, or choose another executor)"
        ) from exc
    if not isinstance(executor, Executor) or not callable(executor.run_attempt):
        raise ConfigError(
            f"the executor {name!r} cannot be loaded: its factory {_qualname(make)} returned "
            f"{type(executor).__qualname__}, not an Executor (an object with a `name` and "
            "`async def run_attempt(host, node, value, number, item)`)"
        )
    return executor


def _qualname(make: Callable[..., Any]) -> str:
    module = getattr(make, "__module__", None)
    name = getattr(make, "__qualname__", None) or repr(make)
    return f"{module}.{name}" if module else name


def _forget_after_fork() -> None:
    global _lock
    _lock = threading.Lock()
    _built.clear()  # an engine's connections must not cross a fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
