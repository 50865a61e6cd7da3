"""``--executor celery``: node attempts run on Celery workers, with Redis as broker and result store.

The scheduler stays in the process that runs the workflow; each attempt is
one Celery task (:mod:`.celery_worker`) carrying the node spec, its input
and the run's context as JSON. The worker records the attempt under the
run. Answers are collected by one poller thread per process, which reads
every pending result in one Redis round trip (``MGET``) and wakes the
waiting attempts.

A worker's pool process killed mid-attempt is reported by Celery as
failed (``WorkerLostError``); a task that never answers is given up after
its ``timeout_s`` (or the run's deadline) plus ``lost_after_s``. Either
way the scheduler completes the attempt's record as failed, with the span id
it chose for it (so a ``node_started`` the worker sent is closed), raises
:class:`~flowledger.NodeLost`, and the node's retry policy decides what
happens next, as for any failed attempt. Any other failure of the task is
not a lost worker: it is raised as a :class:`~flowledger.RemoteNodeError`
of its own type. A node whose output is not JSON fails its attempt on the
worker, which records it so; an effect that did is not sent again (its
later attempts fail here without running), since it has done its work.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Final, NoReturn

from flowledger._exceptions import ConfigError, NodeLost, RemoteNodeError
from flowledger.workflow._spec import Node
from flowledger.workflow.executors._remote_attempt import AnswerKind, apply_answer, attempt_request, new_span_id

if TYPE_CHECKING:
    from celery import Celery

    from flowledger.workflow._host import NodeHost

__all__ = ["CeleryExecutor", "ResultPoller"]

LOST_AFTER_ENV: Final = "FLOWLEDGER_CELERY_LOST_AFTER_S"
DEFAULT_LOST_AFTER_S: Final = 30.0
"""Past a node's ``timeout_s`` (or the run's deadline), how long to wait for a worker's answer before giving up."""
POLL_MIN_S: Final = 0.0005
POLL_MAX_S: Final = 0.004
_READY: Final = frozenset({"SUCCESS", "FAILURE", "REVOKED"})
_WORKER_LOST: Final = "WorkerLostError"
"""What Celery reports for a task whose pool process died mid-task."""
_UNREADABLE: Final = "flowledger_unreadable"
"""Set in a result meta the poller made up because the result store could not be read."""


class ResultPoller:
    """One daemon thread that reads pending task results from the result store and resolves their futures."""

    def __init__(self, celery_app: Celery) -> None:
        self._app = celery_app
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pending: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future[dict[str, Any]]]] = {}
        self._thread: threading.Thread | None = None

    def wait(self, task_id: str) -> asyncio.Future[dict[str, Any]]:
        """A future resolved with the task's result meta (``status``, ``result``) once it is ready."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        with self._lock:
            self._pending[task_id] = (loop, future)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="flowledger-celery-results", daemon=True)
                self._thread.start()
        self._wake.set()
        return future

    def forget(self, task_id: str) -> None:
        with self._lock:
            self._pending.pop(task_id, None)

    def _run(self) -> None:
        backend = self._app.backend
        pause = POLL_MIN_S
        while True:
            with self._lock:
                ids = list(self._pending)
            if not ids:
                self._wake.wait(1.0)
                self._wake.clear()
                pause = POLL_MIN_S
                continue
            try:
                values = backend.mget([backend.get_key_for_task(task_id) for task_id in ids])
            except Exception as exc:  # the store is unreachable: the waiting attempts fail, and are retried
                self._resolve_all({"status": "FAILURE", "result": exc, _UNREADABLE: True})
                time.sleep(POLL_MAX_S)
                continue
            found = False
            for task_id, value in zip(ids, values, strict=True):
                if value is None:
                    continue
                meta = backend.decode_result(value)
                if meta.get("status") in _READY:
                    found = True
                    self._resolve(task_id, meta)
                    try:
                        backend.delete(backend.get_key_for_task(task_id))
                    except Exception:
                        pass
            pause = POLL_MIN_S if found else min(pause * 2, POLL_MAX_S)
            time.sleep(pause)

    def _resolve(self, task_id: str, meta: dict[str, Any]) -> None:
        with self._lock:
            waiting = self._pending.pop(task_id, None)
        if waiting is not None:
            loop, future = waiting
            try:
                loop.call_soon_threadsafe(_set_result, future, meta)
            except RuntimeError:  # that run's loop has closed
                pass

    def _resolve_all(self, meta: dict[str, Any]) -> None:
        with self._lock:
            ids = list(self._pending)
        for task_id in ids:
            self._resolve(task_id, meta)


def _set_result(future: asyncio.Future[dict[str, Any]], meta: dict[str, Any]) -> None:
    if not future.done():
        future.set_result(meta)


class CeleryExecutor:
    """Runs node attempts as Celery tasks on workers started with :mod:`.celery_worker`."""

    name = "celery"

    def __init__(self, url: str | None = None, *, queue: str | None = None, lost_after_s: float | None = None) -> None:
        try:
            from flowledger.workflow.executors.celery_worker import TASK_NAME, make_app
        except ImportError as exc:
            raise ConfigError(
                f"the celery executor needs Celery and Redis: pip install 'flowledger[celery]' ({exc})"
            ) from None
        self.app = make_app(url, queue)  # its result store is what the poller reads
        # Tasks go out through an app without a result store: one with a store subscribes every task it
        # sends to a pub/sub channel, and keeps reconnecting (for tens of seconds) should Redis go away.
        self._publisher = make_app(url, queue)
        self._publisher.conf.result_backend = None
        self.task_name = TASK_NAME
        self.lost_after_s = DEFAULT_LOST_AFTER_S if lost_after_s is None else lost_after_s
        self._poller = ResultPoller(self.app)
        self._spent_effects: weakref.WeakKeyDictionary[NodeHost, dict[tuple[str, int | None], str]] = (
            weakref.WeakKeyDictionary()
        )
        """Per run: effects (node id, map item) that ran and returned a value that is not JSON, never sent again."""

    @classmethod
    def from_env(cls) -> CeleryExecutor:
        """Configured by ``FLOWLEDGER_CELERY_URL``, ``FLOWLEDGER_CELERY_QUEUE``, ``FLOWLEDGER_CELERY_LOST_AFTER_S``."""
        raw = os.environ.get(LOST_AFTER_ENV)
        try:
            lost_after_s = float(raw) if raw else None
        except ValueError:
            raise ConfigError(f"{LOST_AFTER_ENV}={raw!r} must be a number of seconds.") from None
        return cls(lost_after_s=lost_after_s)

    async def run_attempt(self, host: NodeHost, node: Node, value: Any, number: int, item: int | None) -> Any:
        span_id = new_span_id()
        spent = self._spent_effects.get(host, {}).get((node.id, item)) if node.effect else None
        if spent is not None:  # retrying would do the effect again: this attempt fails without being sent
            error = RemoteNodeError(f"node `{node.id}` attempt {number} was not sent: {spent}", type_name="TypeError")
            self._fail_here(host, node, value, number, item, span_id, error)
        request = attempt_request(host, node, value, number, item, span_id)
        result = self._publisher.send_task(self.task_name, args=[request])
        waiting = self._poller.wait(result.id)
        try:
            meta = await asyncio.wait_for(waiting, self._wait_limit_s(host, node))
        except TimeoutError:
            self._poller.forget(result.id)
            result.revoke()  # not started yet: never start it
            self._lost(host, node, value, number, item, span_id, "no answer from any worker in time")
        except asyncio.CancelledError:  # the run was aborted or cancelled: the attempt need not start
            self._poller.forget(result.id)
            result.revoke()
            raise
        answer = meta.get("result")
        if meta.get("status") != "SUCCESS" or not isinstance(answer, dict):
            self._task_failed(host, node, value, number, item, span_id, meta)
        if node.effect and answer.get("kind") == AnswerKind.NOT_JSON:
            self._spent_effects.setdefault(host, {})[node.id, item] = (
                f"the effect ran in attempt {number}, whose output is not JSON; running it again would repeat it"
            )
        return apply_answer(host, node, answer)

    def _wait_limit_s(self, host: NodeHost, node: Node) -> float | None:
        limits = [t for t in (node.timeout_s, host.run.remaining_s()) if t is not None]
        return min(limits) + self.lost_after_s if limits else None

    def _task_failed(
        self, host: NodeHost, node: Node, value: Any, number: int, item: int | None, span_id: str, meta: dict[str, Any]
    ) -> NoReturn:
        """The task did not answer: NodeLost when its worker (or its answer) was lost, else the task's own error.

        Only a worker that died (``WorkerLostError``), a task revoked, or a result store that could not be read
        lose an attempt; any other failure of the task (such as a result Celery could not encode) is raised as a
        :class:`~flowledger.RemoteNodeError` of its type, not retried as a lost worker would be.
        """
        failure = meta.get("result")
        status = meta.get("status")
        described = f"{type(failure).__name__}: {failure}"
        if meta.get(_UNREADABLE):
            self._lost(host, node, value, number, item, span_id, f"its answer could not be read ({described})")
        if status == "REVOKED" or type(failure).__name__ == _WORKER_LOST:
            self._lost(host, node, value, number, item, span_id, described)
        if status == "SUCCESS":
            why = f"its Celery task answered {type(failure).__name__}, not an attempt's answer"
            error = RemoteNodeError(f"node `{node.id}` attempt {number} failed: {why}", type_name="TypeError")
        else:
            error = RemoteNodeError(
                f"node `{node.id}` attempt {number} failed in its Celery task: {described}",
                type_name=type(failure).__name__,
            )
        self._fail_here(host, node, value, number, item, span_id, error)

    def _lost(
        self, host: NodeHost, node: Node, value: Any, number: int, item: int | None, span_id: str, why: str
    ) -> NoReturn:
        """Record the attempt as failed here (its worker could not), then raise NodeLost."""
        error = NodeLost(
            f"node `{node.id}` attempt {number} was lost with its Celery worker: {why}", type_name="WorkerLost"
        )
        self._fail_here(host, node, value, number, item, span_id, error)

    @staticmethod
    def _fail_here(
        host: NodeHost, node: Node, value: Any, number: int, item: int | None, span_id: str, error: Exception
    ) -> NoReturn:
        """Record the attempt as failed with ``error`` here, with the span id chosen for it; raise ``error``."""
        with host.attempt(node, value, number, item, span_id=span_id):
            raise error
        raise error  # pragma: no cover - the hook re-raises
