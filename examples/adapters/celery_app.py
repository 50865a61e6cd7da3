"""Celery tasks recorded by flowledger: `pip install 'flowledger[celery]'` and a Redis server.

    redis-server --port 6379 &                                  # or any broker Celery supports
    flowledger serve &                                          # the receiver
    celery -A celery_app worker --concurrency=2 &               # from examples/adapters/
    python celery_app.py                                        # sends the tasks inside one run

Each task execution in the worker is a node attempt of the run started here,
in the same trace (the run id and traceparent travel in the task's message
headers); the retried task shows one attempt per try.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, Task

import flowledger
from flowledger.adapters.celery import instrument

BROKER = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")

app = Celery("shop", broker=BROKER, backend=BROKER)
app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"])
instrument(app)  # the one line: senders and workers both import this module


@app.task(name="shop.reserve", bind=True, max_retries=2)
def reserve(self: Task[Any, Any], sku: str, qty: int) -> dict[str, Any]:
    if self.request.retries == 0 and sku == "pear":
        raise self.retry(exc=ConnectionError("the stock service did not answer"), countdown=0)
    flowledger.cost(external_requests=1)
    return {"sku": sku, "reserved": qty}


@app.task(name="shop.total")
def total(lines: list[dict[str, Any]]) -> int:
    return sum(int(line["reserved"]) for line in lines)


def main() -> int:
    with flowledger.run("celery-order", name="Order via Celery", data={"order_id": "A-1"}) as run:
        lines = [reserve.delay(sku, qty).get(timeout=30) for sku, qty in (("apple", 3), ("pear", 1))]
        amount: int = total.delay(lines).get(timeout=30)
        run.set_output(amount)
    return amount


if __name__ == "__main__":
    print(main())
    flowledger.flush(timeout_s=2.0)
