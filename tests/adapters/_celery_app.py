"""The Celery app the adapter's tests run in a real worker: broker and result backend from the environment."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, Task

import flowledger
from flowledger.adapters.celery import instrument

BROKER_ENV = "FLOWLEDGER_TEST_CELERY_BROKER"

app = Celery(
    "flowledger_adapter_tests",
    broker=os.environ.get(BROKER_ENV, "redis://127.0.0.1:6379/0"),
    backend=os.environ.get(BROKER_ENV, "redis://127.0.0.1:6379/0"),
)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    task_acks_late=False,
)
instrument(app)


@app.task(name="tests.add")
def add(a: int, b: int) -> int:
    """A plain task; reports a cost from inside."""
    flowledger.cost(tool_calls=1)
    return a + b


@app.task(name="tests.flaky", bind=True, max_retries=3)
def flaky(self: Task[Any, Any], value: int) -> int:
    """Fails its first two attempts, retrying at once; succeeds on the third."""
    if self.request.retries < 2:
        raise self.retry(exc=ValueError(f"attempt {self.request.retries + 1} failed"), countdown=0)
    return value * 10


@app.task(name="tests.broken")
def broken(value: int) -> int:
    """Always fails."""
    raise KeyError(f"no stock for {value}")


@app.task(name="tests.fan_out")
def fan_out(count: int) -> list[int]:
    """Sends `count` add tasks from inside a task and waits for them: nested tasks."""
    from celery.result import allow_join_result

    results = [add.delay(i, i) for i in range(count)]
    with allow_join_result():
        return [r.get(timeout=30) for r in results]
