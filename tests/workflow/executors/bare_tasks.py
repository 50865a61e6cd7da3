"""A plain Celery task with no flowledger in it: the executor benchmark's "engine used bare"."""

from __future__ import annotations

from typing import Any

from flowledger.workflow.executors.celery_worker import app

BARE_TASK: str = "flowledger.bench.identity"


@app.task(name=BARE_TASK)  # type: ignore[untyped-decorator]
def identity(value: Any) -> Any:
    """The input itself."""
    return value
