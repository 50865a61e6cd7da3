"""What running a node's work needs, wherever it runs: the attempt hook, calls, the HTTP client.

:class:`NodeHost` is the part of an execution that one attempt uses
(:mod:`._attempts`): the SDK's ``attempt()`` record, calling the node's
function (awaited if async, in a worker thread if sync: a daemon thread, see :mod:`._threads`) or sending its
request. The scheduler (:class:`~._execute.Execution`) is one; a distributed
executor's worker builds one for the node it was sent.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Final

from flowledger._exceptions import ResumeRefused, RunAborted
from flowledger._wire import NODE_SHA256_ATTRIBUTE
from flowledger.instrument import FixedAttributes, NodeAttempt, Run, attempt
from flowledger.workflow._http_call import send, shown
from flowledger.workflow._resume import RecordedEffect, node_sha256
from flowledger.workflow._spec import Env, Node, Phase, Workflow
from flowledger.workflow._threads import DaemonPool

if TYPE_CHECKING:  # httpx itself is imported with the run's first http node (see NodeHost.http_client)
    import httpx

__all__ = ["MAX_WORKER_THREADS", "NodeHost"]

MAX_WORKER_THREADS: Final = 64
"""Upper bound on sync node calls running at once in one run."""
MAX_IDLE_POOLS: Final = 4
"""Worker pools kept for later runs once their run ended with all its calls done (each run has a pool of its own)."""

_idle_pools: list[DaemonPool] = []
_idle_lock = threading.Lock()


def _take_pool() -> DaemonPool:
    """A worker pool for one run: an idle one an earlier run gave back (its threads started already), or a new one."""
    with _idle_lock:
        if _idle_pools:
            return _idle_pools.pop()
    return DaemonPool(MAX_WORKER_THREADS, thread_name_prefix="flowledger-node")


def _give_back(pool: DaemonPool, *, busy: bool) -> None:
    """Keep ``pool`` for a later run if none of its calls is left; otherwise cancel what waits and let it end."""
    if not busy:
        with _idle_lock:
            if len(_idle_pools) < MAX_IDLE_POOLS:
                _idle_pools.append(pool)
                return
    pool.shutdown(cancel_futures=True)


def _forget_pools_after_fork() -> None:
    global _idle_lock
    _idle_lock = threading.Lock()
    _idle_pools.clear()  # their threads did not cross the fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools_after_fork)


def _attempt_attributes(node: Node, phase: Phase) -> FixedAttributes:
    """The attributes every attempt record of ``node`` in ``phase`` carries (they depend on the spec alone).

    Fixed: the SDK captures them once per capture policy, not once per attempt.
    """
    attributes: dict[str, Any] = {"flowledger.phase": phase.value, NODE_SHA256_ATTRIBUTE: node_sha256(node)}
    if node.call is not None:
        attributes["flowledger.call"] = str(node.call)
    elif node.http is not None:
        attributes["flowledger.http"] = shown(node.http)
    return FixedAttributes(attributes)


class NodeHost:
    """Runs node attempts of one run of ``workflow`` in this process."""

    def __init__(
        self,
        workflow: Workflow,
        recorder: Run,
        *,
        dry_run: bool,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.workflow = workflow
        self.run = recorder
        self.dry_run = dry_run
        self.transport = transport
        self._threads: DaemonPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        """The loop the run's sync calls are awaited on, found with the pool (each lookup of it is a system call)."""
        self._jobs: set[Future[Any]] = set()
        """Sync calls submitted to ``_threads`` and not done (a pool with none left is reused by the next run)."""
        self._client: httpx.AsyncClient | None = None
        self.recorded_effects: Mapping[str, RecordedEffect] = {}
        """Effects that succeeded in the run being resumed, by node id (empty unless resuming)."""
        self.keyboard_interrupt: KeyboardInterrupt | None = None
        """The first KeyboardInterrupt a node's code raised (Ctrl-C, or its own): the run's caller gets it."""

    def attempt(
        self,
        node: Node,
        value: Any,
        number: int,
        item: int | None,
        *,
        phase: Phase = Phase.CALL,
        span_id: str | None = None,
    ) -> NodeAttempt:
        """The SDK hook for one attempt of ``node`` (``span_id``: fixed by an executor that runs it elsewhere)."""
        attributes = self.workflow.attempt_attributes.get((node.id, phase))
        if attributes is None:
            attributes = self.workflow.attempt_attributes[node.id, phase] = _attempt_attributes(node, phase)
        return attempt(
            node.id,
            input=value,
            attempt=number,
            item=item,
            effect=node.effect,
            location=self.workflow.locations[node.id],
            attributes=attributes,
            span_id=span_id,
            capture=node.capture or self.workflow.capture,
        )

    def interrupted_by(self, exc: KeyboardInterrupt, abort: RunAborted) -> None:
        """A node's code raised ``exc``: abort the run with ``abort`` (reason ``interrupted``), and keep ``exc``.

        The run's caller gets ``exc`` once the run is recorded (see ``execute_run``): Ctrl-C stops the program
        that ran the run, as it would without the runtime.
        """
        self.run.abort(abort.reason, str(abort))
        if self.keyboard_interrupt is None:
            self.keyboard_interrupt = exc

    def recorded_effect(self, node: Node, key: str | None) -> tuple[bool, Any]:
        """``(True, output)`` when the resumed run already did this effect with this key; ResumeRefused if its
        output cannot be returned (the record does not hold it whole)."""
        recorded = self.recorded_effects.get(node.id)
        if recorded is None or key is None or recorded.idempotency_key != key:
            return False, None
        if not recorded.available:
            raise ResumeRefused(
                f"node `{node.id}` is an effect that already succeeded on this input, and the record does not "
                "hold its whole output to return again (add `capture: full`); resume with --repeat-effects to run "
                "it again"
            )
        return True, recorded.output

    async def invoke(self, node: Node, value: Any, hook: NodeAttempt) -> Any:
        """Do the node's work once: call its function or send its request."""
        if node.http is not None:
            return await send(node.id, node.http, value, self.http_client, hook, self.run)
        assert node.call is not None
        kwargs = node.kwargs
        if kwargs:
            kwargs = {
                name: arg.read(node.id, f"with.{name}") if isinstance(arg, Env) else arg for name, arg in kwargs.items()
            }
        return await self.call(node.call.resolve(), value, kwargs)

    async def call(self, fn: Callable[..., Any], value: Any, kwargs: Mapping[str, Any]) -> Any:
        """Call ``fn(value, **kwargs)``: awaited if async, in a worker thread if sync."""
        if inspect.iscoroutinefunction(fn):
            return await fn(value, **kwargs)
        if self._threads is None:
            self._threads, self._loop = _take_pool(), asyncio.get_running_loop()
        context = contextvars.copy_context()
        job = self._threads.submit(functools.partial(context.run, fn, value, **kwargs))
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)
        result = await asyncio.wrap_future(job, loop=self._loop)
        if inspect.isawaitable(result):
            result = await result
        return result

    def http_client(self) -> httpx.AsyncClient:
        """The run's HTTP client for http nodes (created on first use)."""
        if self._client is None:
            import httpx  # lazy: only runs with an http node pay for importing httpx

            self._client = httpx.AsyncClient(transport=self.transport)
        return self._client

    async def close(self) -> None:
        """Release the run's HTTP client and worker threads (threads still running are left to finish).

        Idle threads go back for the next run of this process to use, instead of starting threads anew."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._threads is not None:
            _give_back(self._threads, busy=bool(self._jobs))
            self._threads = self._loop = None
