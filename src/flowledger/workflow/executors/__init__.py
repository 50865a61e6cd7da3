"""Where a generated workflow's node attempts run: in this process (``local``) or on a distributed engine.

See :mod:`._base` for the seam; ``celery`` runs attempts on Celery workers
(``pip install 'flowledger[celery]'``; workers start with
``celery -A flowledger.workflow.executors.celery_worker worker``).
"""

from __future__ import annotations

from flowledger._exceptions import NodeLost, RemoteNodeError
from flowledger.workflow.executors._base import (
    DEFAULT_EXECUTOR,
    EXECUTOR_ENV,
    EXECUTORS,
    Executor,
    LocalExecutor,
    executor_named,
)

__all__ = [
    "DEFAULT_EXECUTOR",
    "EXECUTORS",
    "EXECUTOR_ENV",
    "Executor",
    "LocalExecutor",
    "NodeLost",
    "RemoteNodeError",
    "executor_named",
]
