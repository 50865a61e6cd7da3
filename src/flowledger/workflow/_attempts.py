"""Attempts of one node: retries with backoff, ``timeout_s`` per attempt, effects.

Each attempt is its own ``attempt()`` record, so the history shows every
try with its error. Backoff never sleeps past the run's deadline; an
attempt is cut at ``timeout_s`` (NodeTimeout) or at the deadline
(RunAborted), whichever comes first. An attempt after the first counts a
``retry`` penalty in its cost, an attempt cut at its ``timeout_s`` a
``timeout`` penalty.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from flowledger._exceptions import NodeTimeout, RunAborted
from flowledger._wire import AbortReason
from flowledger.instrument import NodeAttempt, Penalty, Run
from flowledger.workflow._spec import Node, Phase

__all__ = ["AttemptHost", "RetryHost", "one_attempt", "run_attempts"]


class AttemptHost(Protocol):
    """What attempting a node needs from the run executing it (``Execution`` is one)."""

    @property
    def run(self) -> Run:
        """The run's recorder: its deadline, and where an abort is recorded."""
        ...

    @property
    def dry_run(self) -> bool:
        """True when effect nodes are simulated."""
        ...

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
        """The SDK hook recording one attempt of ``node``."""
        ...

    async def invoke(self, node: Node, value: Any, hook: NodeAttempt) -> Any:
        """Do the node's work once."""
        ...

    def recorded_effect(self, node: Node, key: str | None) -> tuple[bool, Any]:
        """``(True, output)`` when a resumed run already did this effect with this idempotency key."""
        ...


class RetryHost(AttemptHost, Protocol):
    """What retrying a node needs: the run, and a way to run one attempt (through the run's executor)."""

    async def attempt_once(self, node: Node, value: Any, number: int, item: int | None) -> Any:
        """One attempt of ``node``, recorded where it runs."""
        ...


async def run_attempts(execution: RetryHost, node: Node, value: Any, item: int | None) -> Any:
    """Attempt ``node`` on ``value`` until one attempt succeeds or its retries are spent."""
    policy = node.retry
    number = 1
    while True:
        try:
            return await execution.attempt_once(node, value, number, item)
        except (RunAborted, asyncio.CancelledError):
            raise
        except Exception:
            if number >= policy.attempts:
                raise
        delay = policy.delay_s(number)
        remaining = execution.run.remaining_s()
        if remaining is not None:
            delay = min(delay, remaining)
        if delay > 0:
            await asyncio.sleep(delay)
        number += 1


async def one_attempt(
    execution: AttemptHost, node: Node, value: Any, number: int, item: int | None, *, span_id: str | None = None
) -> Any:
    """Attempt ``node`` once, recorded by its host's hook: dry runs, the effect guard, ``timeout_s``, the deadline."""
    with execution.attempt(node, value, number, item, span_id=span_id) as hook:
        if number > 1:
            hook.add_penalty(Penalty.RETRY)
        if node.effect and execution.dry_run:
            hook.simulate()
            return None
        if node.effect:
            hit, recorded = hook.guard_hit()
            if not hit:
                hit, recorded = execution.recorded_effect(node, hook.idempotency_key)
            if hit:
                hook.duplicate(recorded)
                return recorded
        remaining = execution.run.remaining_s()
        work = execution.invoke(node, value, hook)
        if node.timeout_s is None and remaining is None:
            output = await work  # no limit: a plain await, no wait_for task
        else:
            limit = min(t for t in (node.timeout_s, remaining) if t is not None)
            try:
                output = await asyncio.wait_for(work, limit)
            except TimeoutError:
                if node.timeout_s is not None and limit >= node.timeout_s:
                    hook.add_penalty(Penalty.TIMEOUT)
                    raise NodeTimeout(
                        f"node `{node.id}` attempt {number} ran longer than its timeout_s of {node.timeout_s:g} s"
                    ) from None
                deadline_s = execution.run.deadline_s
                execution.run.abort(AbortReason.DEADLINE, f"the run passed its deadline of {deadline_s:g} s")
                execution.run.check_limits()
                raise
        hook.set_output(output)
        return output
