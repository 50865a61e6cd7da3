"""The Celery side of ``--executor celery``: the app and the one task its workers run.

Start workers where the workflow's node functions can be imported (the
same code and environment as the scheduler, ``FLOWLEDGER_*`` pointing at
where records go)::

    FLOWLEDGER_CELERY_URL=redis://broker:6379/0 \\
        celery -A flowledger.workflow.executors.celery_worker worker -Q flowledger --concurrency 4

Each task runs one node attempt and records it from the worker process
(see ``_remote_attempt``). Only JSON crosses the broker (no pickle).
Before a pool process exits, its records are flushed.
"""

from __future__ import annotations

import os
from typing import Any, Final

from celery import Celery, signals

from flowledger.instrument import shutdown
from flowledger.workflow.executors._remote_attempt import run_requested_attempt

__all__ = ["CELERY_QUEUE_ENV", "CELERY_URL_ENV", "DEFAULT_CELERY_URL", "DEFAULT_QUEUE", "TASK_NAME", "app", "make_app"]

CELERY_URL_ENV: Final = "FLOWLEDGER_CELERY_URL"
"""The broker and result store (Redis) URL."""
DEFAULT_CELERY_URL: Final = "redis://127.0.0.1:6379/0"
CELERY_QUEUE_ENV: Final = "FLOWLEDGER_CELERY_QUEUE"
DEFAULT_QUEUE: Final = "flowledger"
TASK_NAME: Final = "flowledger.node_attempt"
RESULT_EXPIRES_S: Final = 3600


def make_app(url: str | None = None, queue: str | None = None) -> Celery:
    """A Celery app on ``url`` (default ``$FLOWLEDGER_CELERY_URL``) for flowledger's node attempts."""
    url = url or os.environ.get(CELERY_URL_ENV) or DEFAULT_CELERY_URL
    queue = queue or os.environ.get(CELERY_QUEUE_ENV) or DEFAULT_QUEUE
    celery_app = Celery("flowledger", broker=url, backend=url, set_as_current=False)
    celery_app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_default_queue=queue,
        task_acks_late=False,  # a pool process killed mid-attempt is reported (WorkerLostError), not redelivered
        worker_prefetch_multiplier=1,
        result_expires=RESULT_EXPIRES_S,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return celery_app


app = make_app()


@app.task(name=TASK_NAME)  # type: ignore[untyped-decorator]
def node_attempt(request: dict[str, Any]) -> dict[str, Any]:
    """Run one node attempt here and answer how it went."""
    return run_requested_attempt(request)


@signals.worker_process_shutdown.connect  # type: ignore[untyped-decorator]
def _flush_records(**_: Any) -> None:
    shutdown()
