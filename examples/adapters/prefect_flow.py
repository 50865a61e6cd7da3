"""A Prefect 3 flow recorded by flowledger: `pip install 'flowledger[prefect]'`, then run this file.

Start a receiver first (`flowledger serve`), or set FLOWLEDGER_ENDPOINT; then
`flowledger runs` and `flowledger show RUN_ID` show the flow run with one
node per task attempt, including the retried one. Prefect runs on its local
ephemeral server unless PREFECT_API_URL says otherwise.
"""

from __future__ import annotations

from prefect import flow, task

import flowledger
from flowledger.adapters.prefect import instrument

_tries = {"price": 0}


@instrument
@task
def fetch(order_id: str) -> dict[str, object]:
    return {"order_id": order_id, "lines": [{"sku": "apple", "qty": 3}, {"sku": "pear", "qty": 1}]}


@instrument
@task(retries=2)
def price(line: dict[str, object]) -> float:
    _tries["price"] += 1
    flowledger.cost(external_requests=1, usd=0.001)
    if _tries["price"] == 1:
        raise ConnectionError("the price service did not answer")  # Prefect retries; flowledger records both attempts
    return 1.5 * float(str(line["qty"]))


@instrument
@flow
def order_intake(order_id: str = "A-1") -> float:
    order = fetch(order_id)
    lines = order["lines"]
    assert isinstance(lines, list)
    futures = [price.submit(line) for line in lines]  # run concurrently on Prefect's task runner
    return sum(f.result() for f in futures)


if __name__ == "__main__":
    print(order_intake("A-1"))
    flowledger.flush(timeout_s=2.0)
