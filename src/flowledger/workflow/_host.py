"""What running a node's work needs, wherever it runs: the attempt hook, calls, the HTTP client.

:class:`NodeHost` is the part of an execution that one attempt uses
(:mod:`._attempts`): the SDK's ``attempt()`` record, calling the node's
function (awaited if async, in a worker thread if sync) or sending its
request. The scheduler (:class:`~._execute.Execution`) is one; a distributed
executor's worker builds one for the node it was sent.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Final

from flowledger._exceptions import ResumeRefused
from flowledger._wire import NODE_SHA256_ATTRIBUTE
from flowledger.instrument import NodeAttempt, Run, attempt
from flowledger.workflow._http_call import send
from flowledger.workflow._resume import RecordedEffect, node_sha256
from flowledger.workflow._spec import Env, Node, Phase, Workflow

if TYPE_CHECKING:  # httpx itself is imported with the run's first http node (see NodeHost.http_client)
    import httpx

__all__ = ["MAX_WORKER_THREADS", "NodeHost"]

MAX_WORKER_THREADS: Final = 64
"""Upper bound on sync node calls running at once in one run."""


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
        self._threads: ThreadPoolExecutor | None = None
        self._client: httpx.AsyncClient | None = None
        self._node_hashes: dict[str, str] = {}
        self.recorded_effects: Mapping[str, RecordedEffect] = {}
        """Effects that succeeded in the run being resumed, by node id (empty unless resuming)."""

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
        digest = self._node_hashes.get(node.id)
        if digest is None:
            digest = self._node_hashes[node.id] = node_sha256(node)
        attributes: dict[str, Any] = {"flowledger.phase": phase.value, NODE_SHA256_ATTRIBUTE: digest}
        if node.call is not None:
            attributes["flowledger.call"] = str(node.call)
        elif node.http is not None:
            attributes["flowledger.http"] = f"{node.http.method} {node.http.url}"
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

    def recorded_effect(self, node: Node, key: str | None) -> tuple[bool, Any]:
        """``(True, output)`` when the resumed run already did this effect with this key; ResumeRefused if its
        output cannot be returned (it was not captured in full)."""
        recorded = self.recorded_effects.get(node.id)
        if recorded is None or key is None or recorded.idempotency_key != key:
            return False, None
        if not recorded.available:
            raise ResumeRefused(
                f"node `{node.id}` is an effect that already succeeded on this input, and its output was not "
                "captured in full to return again; resume with --repeat-effects to run it again"
            )
        return True, recorded.output

    async def invoke(self, node: Node, value: Any, hook: NodeAttempt) -> Any:
        """Do the node's work once: call its function or send its request."""
        if node.http is not None:
            return await send(node.id, node.http, value, self.http_client, hook, self.run)
        assert node.call is not None
        kwargs = {
            name: arg.read(node.id, f"with.{name}") if isinstance(arg, Env) else arg
            for name, arg in node.kwargs.items()
        }
        return await self.call(node.call.resolve(), value, kwargs)

    async def call(self, fn: Callable[..., Any], value: Any, kwargs: Mapping[str, Any]) -> Any:
        """Call ``fn(value, **kwargs)``: awaited if async, in a worker thread if sync."""
        if inspect.iscoroutinefunction(fn):
            return await fn(value, **kwargs)
        if self._threads is None:
            self._threads = ThreadPoolExecutor(MAX_WORKER_THREADS, thread_name_prefix="flowledger-node")
        context = contextvars.copy_context()
        job = functools.partial(context.run, fn, value, **kwargs)
        result = await asyncio.get_running_loop().run_in_executor(self._threads, job)
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
        """Release the run's HTTP client and worker threads (threads still running are left to finish)."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._threads = None
