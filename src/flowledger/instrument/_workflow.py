"""The runtime that generated workflow modules call: specs and the DAG executor.

A generated module is thin: it declares a :class:`Workflow` of :class:`Node`
specs and hands it to :func:`execute`. Everything that decides how a run
behaves lives here, so fixing it needs no regeneration:

- nodes whose needs are met run concurrently (sync functions in worker
  threads, so they never block the event loop);
- every attempt goes through the SDK's ``attempt()`` hook (retries with
  backoff, ``timeout_s`` per attempt: see :mod:`._retry`);
- ``when`` predicates skip a node, ``map`` runs it once per item with
  bounded concurrency, ``effect`` nodes are simulated in dry runs;
- a node that fails after its retries fails the run (unless
  ``on_error=CONTINUE``), its dependents are skipped, independent branches
  finish; a skipped node skips its dependents;
- the run's deadline and budget abort it: running nodes are cancelled and
  the nodes that never started are recorded as skipped.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import enum
import functools
import importlib
import inspect
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from flowledger._exceptions import ConfigError, RunAborted, WorkflowFailed
from flowledger._wire import RunStatus, TriggerType
from flowledger.instrument._node import Location, NodeAttempt, record_skip
from flowledger.instrument._run import Run, run

if TYPE_CHECKING:
    import httpx

__all__ = [
    "Call",
    "Env",
    "Execution",
    "Http",
    "HttpTrigger",
    "Limits",
    "Manual",
    "Map",
    "Node",
    "OnError",
    "Phase",
    "Retry",
    "RunResult",
    "Schedule",
    "Workflow",
    "execute",
    "execute_run",
]

DEFAULT_MAP_CONCURRENCY: Final = 8
MAX_WORKER_THREADS: Final = 64
"""Upper bound on sync node calls running at once in one run."""


# --- specs: what a generated module declares -------------------------------


class OnError(enum.StrEnum):
    """What a node's final failure does to the run."""

    FAIL = "fail"
    CONTINUE = "continue"


class Phase(enum.StrEnum):
    """What part of a node an attempt record covers (attribute ``flowledger.phase``)."""

    CALL = "call"
    WHEN = "when"
    MAP = "map"


@dataclass(frozen=True, slots=True)
class Env:
    """A keyword argument or header whose value is read from the environment when the node runs.

    The value is passed to the node but never recorded.
    """

    name: str

    def read(self, node_id: str, where: str) -> str:
        """The variable's value; ConfigError naming it and its use when it is unset."""
        try:
            return os.environ[self.name]
        except KeyError:
            raise ConfigError(
                f"environment variable {self.name} is not set; node `{node_id}` reads it for {where}"
            ) from None


@dataclass(frozen=True, slots=True)
class Call:
    """A function by import path, imported the first time a run needs it."""

    module: str
    function: str

    def __str__(self) -> str:
        return f"{self.module}:{self.function}"

    def resolve(self) -> Callable[..., Any]:
        """Import and return the function (cached per process by the import system)."""
        module = importlib.import_module(self.module)
        try:
            fn = getattr(module, self.function)
        except AttributeError:
            raise AttributeError(f"module {self.module!r} has no function {self.function!r} (from `{self}`)") from None
        if not callable(fn):
            raise TypeError(f"`{self}` is a {type(fn).__name__}, not a function")
        return fn  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class Http:
    """An http node: sends its input as JSON and returns the JSON reply."""

    url: str
    method: str = "POST"
    headers: Mapping[str, str | Env] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Retry:
    """Attempts and exponential backoff between them."""

    attempts: int = 1
    backoff_s: float = 0.0
    factor: float = 2.0
    max_backoff_s: float = 30.0

    def delay_s(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.max_backoff_s, self.backoff_s * self.factor ** (attempt - 1)))


NO_RETRY: Final = Retry()


@dataclass(frozen=True, slots=True)
class Map:
    """Run the node once per item of its list input, at most ``max_concurrency`` at a time."""

    max_concurrency: int = DEFAULT_MAP_CONCURRENCY


@dataclass(frozen=True, slots=True)
class Node:
    """One node of a workflow: a ``call`` or an ``http`` request, and how to run it."""

    id: str
    call: Call | None = None
    http: Http | None = None
    needs: tuple[str, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    retry: Retry = NO_RETRY
    timeout_s: float | None = None
    when: Call | None = None
    map: Map | None = None
    effect: bool = False
    on_error: OnError = OnError.FAIL
    line: int = 0
    """Line of the definition file that declares the node (0: unknown)."""

    def __post_init__(self) -> None:
        if (self.call is None) == (self.http is None):
            raise ConfigError(f"node `{self.id}` needs exactly one of call= or http=")


@dataclass(frozen=True, slots=True)
class Manual:
    """Runs start from the command line or from ``run(payload)``."""


@dataclass(frozen=True, slots=True)
class HttpTrigger:
    """``POST path`` on the module's ASGI ``app`` starts a run."""

    path: str


@dataclass(frozen=True, slots=True)
class Schedule:
    """``python module.py --serve`` starts a run every ``every_s`` seconds, or at each ``cron`` time (UTC)."""

    every_s: float | None = None
    cron: str | None = None

    def __post_init__(self) -> None:
        if (self.every_s is None) == (self.cron is None):
            raise ConfigError("a schedule needs exactly one of every_s= or cron=")


@dataclass(frozen=True, slots=True)
class Limits:
    """The run is aborted past ``deadline_s`` or once its cost passes ``budget_usd``."""

    deadline_s: float | None = None
    budget_usd: float | None = None


@dataclass(frozen=True, slots=True)
class Workflow:
    """A whole workflow, as a generated module declares it."""

    id: str
    nodes: tuple[Node, ...]
    output: str
    name: str | None = None
    version: str | None = None
    trigger: Manual | HttpTrigger | Schedule = field(default_factory=Manual)
    limits: Limits = field(default_factory=Limits)
    definition_file: str = ""
    definition_sha256: str | None = None
    locations: Mapping[str, Location] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ids = [n.id for n in self.nodes]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"workflow `{self.id}` declares a node id twice")
        missing = sorted({need for n in self.nodes for need in n.needs} - set(ids))
        if missing or self.output not in ids:
            raise ConfigError(f"workflow `{self.id}` refers to unknown nodes: {missing or [self.output]}")
        locations = {
            n.id: Location(self.definition_file, n.line, f"nodes[{index}]") for index, n in enumerate(self.nodes)
        }
        object.__setattr__(self, "locations", locations)

    @property
    def trigger_type(self) -> TriggerType:
        """The wire-format trigger type of a run this workflow's own trigger starts."""
        if isinstance(self.trigger, HttpTrigger):
            return TriggerType.HTTP
        if isinstance(self.trigger, Schedule):
            return TriggerType.SCHEDULE
        return TriggerType.MANUAL


# --- results ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunResult:
    """How one run ended."""

    run_id: str
    status: RunStatus
    output: Any = None
    error: BaseException | None = None
    node_id: str | None = None
    """The failing node, when a node failed the run."""


class _State(enum.Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


# --- running ----------------------------------------------------------------


async def execute(
    workflow: Workflow,
    payload: Any = None,
    *,
    dry_run: bool = False,
    trigger: TriggerType | None = None,
    traceparent: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Any:
    """Run ``workflow`` once on ``payload`` and return its output.

    Raises :class:`~flowledger.WorkflowFailed` (its ``__cause__`` is the
    node's exception) when a node fails the run, and
    :class:`~flowledger.RunAborted` when the deadline or budget stops it.
    """
    result = await execute_run(
        workflow, payload, dry_run=dry_run, trigger=trigger, traceparent=traceparent, transport=transport
    )
    if isinstance(result.error, RunAborted):
        raise result.error
    if result.status is not RunStatus.SUCCEEDED:
        failure = WorkflowFailed(
            f"workflow `{workflow.id}` failed at node `{result.node_id}`: {result.error!r} (run {result.run_id})",
            run_id=result.run_id,
            node_id=result.node_id,
        )
        raise failure from result.error
    return result.output


async def execute_run(
    workflow: Workflow,
    payload: Any = None,
    *,
    dry_run: bool = False,
    trigger: TriggerType | None = None,
    traceparent: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> RunResult:
    """Run ``workflow`` once and return how it ended, without raising for a failed run."""
    recorder = run(
        workflow.id,
        name=workflow.name,
        version=workflow.version,
        trigger=trigger or workflow.trigger_type,
        data=payload,
        dry_run=dry_run,
        deadline_s=workflow.limits.deadline_s,
        budget_usd=workflow.limits.budget_usd,
        definition_sha256=workflow.definition_sha256,
        traceparent=traceparent,
    )
    execution = Execution(workflow, recorder, dry_run=dry_run, transport=transport)
    try:
        async with recorder:
            output = await execution.run_graph(payload)
            if execution.failure is not None:
                exc, node_id = execution.failure
                recorder.fail(exc, node_id)
            else:
                recorder.set_output(output)
    except RunAborted as abort:
        return RunResult(recorder.run_id, RunStatus.ABORTED, error=abort)
    finally:
        await execution.close()
    if execution.failure is not None:
        exc, node_id = execution.failure
        return RunResult(recorder.run_id, RunStatus.FAILED, error=exc, node_id=node_id)
    return RunResult(recorder.run_id, RunStatus.SUCCEEDED, output=output)


class Execution:
    """One run of a workflow: schedules nodes as their needs finish."""

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
        self.failure: tuple[BaseException, str] | None = None
        self._states: dict[str, _State] = {}
        self._outputs: dict[str, Any] = {}
        self._unmet: dict[str, int] = {}
        self._dependents: dict[str, list[Node]] = {}
        self._unstarted: dict[str, Node] = {}
        self._ready: collections.deque[Node] = collections.deque()
        self._done: collections.deque[asyncio.Task[tuple[_State, Any]]] = collections.deque()
        self._wakeup = asyncio.Event()
        self._threads: ThreadPoolExecutor | None = None
        self._client: httpx.AsyncClient | None = None

    # --- the graph ---------------------------------------------------------

    async def run_graph(self, payload: Any) -> Any:
        """Run every node; return the output node's output (None if it did not succeed)."""
        nodes = self.workflow.nodes
        self._unmet = {n.id: len(n.needs) for n in nodes}
        self._dependents = {n.id: [] for n in nodes}
        for node in nodes:
            for need in node.needs:
                self._dependents[need].append(node)
        self._unstarted = {n.id: n for n in nodes}
        self._ready = collections.deque(n for n in nodes if not n.needs)
        running: dict[asyncio.Task[tuple[_State, Any]], Node] = {}
        try:
            while True:
                self._start_ready(running, payload)
                if not running:
                    break
                await self._wait_for_done()
                while self._done:
                    task = self._done.popleft()
                    self._finished(running.pop(task), task)
                self.run.check_limits()  # a passed deadline or budget stops here, between nodes
        except RunAborted as abort:
            await self._abort(abort, list(self._unstarted.values()), running)
            raise
        except BaseException:  # cancelled from outside (e.g. the caller went away): stop the nodes too
            for task in running:
                task.cancel()
            raise
        return self._outputs.get(self.workflow.output)

    async def _wait_for_done(self) -> None:
        """Wait until a node task finishes or the deadline comes (O(1) per wake-up, however many run)."""
        if self._done:
            return
        self._wakeup.clear()
        remaining = self.run.remaining_s()
        if remaining is None:
            await self._wakeup.wait()
            return
        try:
            await asyncio.wait_for(self._wakeup.wait(), remaining)
        except TimeoutError:
            pass

    def _task_done(self, task: asyncio.Task[tuple[_State, Any]]) -> None:
        self._done.append(task)
        self._wakeup.set()

    def _settle(self, node: Node, state: _State) -> None:
        """Record ``node``'s final state; dependents whose needs are now all settled become ready."""
        self._states[node.id] = state
        for dependent in self._dependents[node.id]:
            self._unmet[dependent.id] -= 1
            if self._unmet[dependent.id] == 0:
                self._ready.append(dependent)

    def _start_ready(self, running: dict[asyncio.Task[tuple[_State, Any]], Node], payload: Any) -> None:
        while self._ready:
            node = self._ready.popleft()
            del self._unstarted[node.id]
            blocker = next((n for n in node.needs if self._states[n] is not _State.SUCCEEDED), None)
            if blocker is not None:
                how = "failed" if self._states[blocker] is _State.FAILED else "was skipped"
                record_skip(node.id, f"needs `{blocker}`, which {how}", location=self.workflow.locations[node.id])
                self._settle(node, _State.SKIPPED)
                continue
            task = asyncio.create_task(self._run_node(node, self._input_of(node, payload)), name=node.id)
            task.add_done_callback(self._task_done)
            running[task] = node

    def _input_of(self, node: Node, payload: Any) -> Any:
        if not node.needs:
            return payload
        if len(node.needs) == 1:
            return self._outputs[node.needs[0]]
        return {need: self._outputs[need] for need in node.needs}

    def _finished(self, node: Node, task: asyncio.Task[tuple[_State, Any]]) -> None:
        exc = asyncio.CancelledError(f"node `{node.id}` was cancelled") if task.cancelled() else task.exception()
        if exc is None:
            state, output = task.result()
            if state is _State.SUCCEEDED:
                self._outputs[node.id] = output
            self._settle(node, state)
            return
        if isinstance(exc, RunAborted):
            raise exc
        if node.on_error is OnError.FAIL and self.failure is None:
            self.failure = (exc, node.id)
        self._settle(node, _State.FAILED)

    async def _abort(
        self, abort: RunAborted, waiting: list[Node], running: dict[asyncio.Task[tuple[_State, Any]], Node]
    ) -> None:
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        for node in waiting:
            record_skip(node.id, f"the run was aborted ({abort.reason})", location=self.workflow.locations[node.id])

    # --- one node ----------------------------------------------------------

    async def _run_node(self, node: Node, value: Any) -> tuple[_State, Any]:
        from flowledger.instrument._retry import run_attempts

        location = self.workflow.locations[node.id]
        if node.when is not None:
            try:
                keep = await self.call(node.when.resolve(), value, {})
            except Exception as exc:
                with self.attempt(node, value, 1, None, phase=Phase.WHEN):
                    raise exc from None
            if not keep:
                record_skip(node.id, f"when `{node.when}` returned {keep!r}", location=location)
                return _State.SKIPPED, None
        if node.map is None:
            return _State.SUCCEEDED, await run_attempts(self, node, value, None)
        if not isinstance(value, list | tuple):
            with self.attempt(node, value, 1, None, phase=Phase.MAP):
                raise TypeError(
                    f"node `{node.id}` maps over its input, which must be a list, not {type(value).__name__}"
                )
        return _State.SUCCEEDED, await self._map(node, list(value))

    async def _map(self, node: Node, items: list[Any]) -> list[Any]:
        from flowledger.instrument._retry import run_attempts

        assert node.map is not None
        gate = asyncio.Semaphore(node.map.max_concurrency)
        failed: list[BaseException] = []

        async def one(index: int, item: Any) -> Any:
            async with gate:
                if failed:
                    record_skip(
                        node.id, "an earlier item failed", item=index, location=self.workflow.locations[node.id]
                    )
                    return None
                try:
                    return await run_attempts(self, node, item, index)
                except BaseException as exc:
                    failed.append(exc)
                    raise

        results = await asyncio.gather(*(one(i, item) for i, item in enumerate(items)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise next((e for e in errors if isinstance(e, RunAborted)), errors[0])
        return results

    def attempt(
        self, node: Node, value: Any, number: int, item: int | None, *, phase: Phase = Phase.CALL
    ) -> NodeAttempt:
        """The SDK hook for one attempt of ``node``."""
        from flowledger.instrument._node import attempt

        attributes: dict[str, Any] = {"flowledger.phase": phase.value}
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
        )

    async def invoke(self, node: Node, value: Any, hook: NodeAttempt) -> Any:
        """Do the node's work once: call its function or send its request."""
        if node.http is not None:
            from flowledger.instrument._http_node import send

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
            import httpx

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
