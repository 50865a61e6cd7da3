"""The node functions of the fault suite's workflow (``fetch`` → ``enrich`` → ``store``)."""

from __future__ import annotations

import os
import time
from typing import Any

import flowledger

__all__ = ["RUN_IDS", "enrich", "fetch", "store"]

RUN_IDS: list[str] = []
"""Ids of the runs this process made, in order (the producer prints them)."""


def _pause() -> None:
    time.sleep(float(os.environ.get("FAULTS_STEP_SLEEP_S", "0")))


def fetch(payload: dict[str, Any]) -> dict[str, Any]:
    run = flowledger.current_run()
    if run is not None:
        RUN_IDS.append(run.run_id)
    _pause()
    return {"order": payload.get("i", 0), "lines": [{"sku": f"sku-{n}", "qty": n} for n in range(3)]}


def enrich(fetch: dict[str, Any]) -> dict[str, Any]:
    _pause()
    time.sleep(float(os.environ.get("FAULTS_SLOW_NODE_S", "0")))
    return {**fetch, "total": sum(line["qty"] for line in fetch["lines"])}


def store(enrich: dict[str, Any]) -> dict[str, Any]:
    _pause()
    return {"stored": enrich["order"], "total": enrich["total"]}
