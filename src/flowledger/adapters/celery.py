"""Celery: each task execution is a node attempt, attached across processes by its message headers.

One line turns it on, in the module that makes the app, so that the
publisher and the workers both run it (``pip install 'flowledger[celery]'``)::

    from flowledger.adapters.celery import instrument

    app = Celery("shop", broker="redis://...")
    instrument(app)

Everything goes through Celery's signals; nothing is patched:

- ``before_task_publish``: a task sent inside a flowledger run (or inside
  another instrumented task) carries the run's id, its workflow id and the
  sender's W3C ``traceparent`` in its message headers.
- ``task_prerun``: in the worker, a task that carries them continues that
  run (:meth:`~flowledger.instrument.Run.continued`), so its attempt is a
  node of the publisher's run and its span a child of the sender's span; a
  task sent outside any run records itself as a run of its own.
- ``task_retry``, ``task_failure``, ``task_postrun``: the attempt ends
  failed (with the exception) or succeeded (with the return value). Each
  retry is a new attempt of the same node, numbered ``request.retries + 1``;
  a retry sent by the task keeps the headers it arrived with.
- ``worker_process_shutdown``: the worker process flushes what it recorded.

The attempt is the current node while the task runs, so
``flowledger.cost()`` and ``@flowledger.node`` inside it attach to it, and
tasks it sends nest under it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Final

import flowledger
from flowledger._exceptions import ReportedFailure
from flowledger.adapters._base import UNSET, Recorder
from flowledger.instrument import current_node, current_run

if TYPE_CHECKING:
    from celery import Celery, Task

__all__ = ["FLUSH_TIMEOUT_S", "HEADER_RUN_ID", "HEADER_TRACEPARENT", "HEADER_WORKFLOW_ID", "instrument", "recorder"]

HEADER_RUN_ID: Final = "flowledger_run_id"
"""Message header: the id of the flowledger run a task belongs to."""
HEADER_WORKFLOW_ID: Final = "flowledger_workflow_id"
"""Message header: that run's workflow id."""
HEADER_TRACEPARENT: Final = "flowledger_traceparent"
"""Message header: the W3C traceparent of the span that sent the task."""
FLUSH_TIMEOUT_S: Final = 5.0
"""How long a worker process waits for its records to go out when it shuts down."""

recorder: Final = Recorder()
"""The recorder of every instrumented Celery task in this process."""

_lock = threading.Lock()
_apps: set[int] = set()
_connected = False
_carried: dict[str, dict[str, str]] = {}  # running task id -> the flowledger headers it arrived with


def instrument(app: Celery) -> Celery:
    """Record the tasks of ``app`` (published and executed in this process); returns the app. Idempotent."""
    global _connected
    from celery import signals

    with _lock:
        _apps.add(id(app))
        if _connected:
            return app
        _connected = True
    signals.before_task_publish.connect(_before_publish, weak=False, dispatch_uid="flowledger.before_task_publish")
    signals.task_prerun.connect(_prerun, weak=False, dispatch_uid="flowledger.task_prerun")
    signals.task_retry.connect(_retry, weak=False, dispatch_uid="flowledger.task_retry")
    signals.task_failure.connect(_failure, weak=False, dispatch_uid="flowledger.task_failure")
    signals.task_postrun.connect(_postrun, weak=False, dispatch_uid="flowledger.task_postrun")
    signals.worker_process_shutdown.connect(_flush, weak=False, dispatch_uid="flowledger.worker_process_shutdown")
    return app


def _ours(task: Task[Any, Any] | None) -> bool:
    return task is not None and id(task.app) in _apps


# --- the publishing side -----------------------------------------------------------


def _before_publish(sender: str | None = None, headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    if headers is None or headers.get(HEADER_RUN_ID):
        return
    with _lock:
        carried = _carried.get(str(headers.get("id")))
    if carried is not None:  # the task retries itself: the next attempt belongs where the first did
        headers.update(carried)
        return
    run = current_run()
    if run is None or not run.run_id:
        return
    node_attempt = current_node()
    traceparent = node_attempt.trace_context() if node_attempt is not None else None
    if traceparent is None:
        traceparent = run.trace_context() if not run.continues else run.traceparent
    headers[HEADER_RUN_ID] = run.run_id
    headers[HEADER_WORKFLOW_ID] = run.workflow_id
    if traceparent:
        headers[HEADER_TRACEPARENT] = traceparent


# --- the worker side -----------------------------------------------------------------


def _prerun(
    task_id: str | None = None,
    task: Task[Any, Any] | None = None,
    args: Any = None,
    kwargs: Any = None,
    **_: Any,
) -> None:
    if task_id is None or task is None or not _ours(task):
        return
    request = task.request
    run_id = getattr(request, HEADER_RUN_ID, None)
    run_key: str | None = None
    if run_id:
        workflow_id = str(getattr(request, HEADER_WORKFLOW_ID, None) or task.name)
        traceparent = getattr(request, HEADER_TRACEPARENT, None)
        carried = {HEADER_RUN_ID: str(run_id), HEADER_WORKFLOW_ID: workflow_id}
        if traceparent:
            carried[HEADER_TRACEPARENT] = str(traceparent)
        with _lock:
            _carried[task_id] = carried
        recorder.run_continued(task_id, str(run_id), workflow_id=workflow_id, traceparent=traceparent)
        run_key = task_id
    recorder.node_started(
        task_id,
        task.name,
        run_key=run_key,
        input={"args": list(args or ()), "kwargs": dict(kwargs or {})},
        attempt=int(getattr(request, "retries", 0) or 0) + 1,
        attributes={"celery.task_id": task_id, "celery.hostname": getattr(request, "hostname", None)},
        current=True,  # Celery runs a task's signals in the task's own thread
    )


def _retry(request: Any = None, reason: Any = None, **_: Any) -> None:
    task_id = getattr(request, "id", None)
    if task_id is not None:
        reason = getattr(reason, "exc", None) or reason  # celery.exceptions.Retry holds the exception retried for
        error = reason if isinstance(reason, BaseException) else ReportedFailure(f"Celery retried the task: {reason}")
        recorder.node_finished(task_id, error=error)


def _failure(task_id: str | None = None, exception: BaseException | None = None, **_: Any) -> None:
    if task_id is not None:
        recorder.node_finished(task_id, error=exception or ReportedFailure("Celery reported the task failed"))


def _postrun(task_id: str | None = None, retval: Any = None, state: str | None = None, **_: Any) -> None:
    if task_id is None:
        return
    recorder.node_finished(task_id, output=retval if state == "SUCCESS" else UNSET)
    recorder.run_finished(task_id)
    with _lock:
        _carried.pop(task_id, None)


def _flush(**_: Any) -> None:
    flowledger.flush(timeout_s=FLUSH_TIMEOUT_S)
