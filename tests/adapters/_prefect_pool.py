"""A Prefect flow whose tasks run in another process (ProcessPoolTaskRunner), for the adapter's tests.

Its own module, so that the spawned worker process imports it by name.
"""

from __future__ import annotations

import os

from prefect import flow, task
from prefect.task_runners import ProcessPoolTaskRunner

from flowledger.adapters.prefect import instrument


@instrument
@task
def where(x: int) -> dict[str, int]:
    """Report the process the task ran in."""
    return {"x": x, "pid": os.getpid()}


@instrument
@flow(task_runner=ProcessPoolTaskRunner(max_workers=1))  # type: ignore[arg-type]  # Prefect types it narrower than it takes
def pooled(count: int) -> list[dict[str, int]]:
    futures = [where.submit(i) for i in range(count)]
    return [f.result() for f in futures]
