"""The runtime SDK: run and node hooks, context, capture, config, cost, OTel bridge.

Events leave the process through :mod:`flowledger.instrument.delivery`
(sender, spool, backoff, span export). The runtime of generated workflows
builds on these hooks in :mod:`flowledger.workflow`.
"""

from __future__ import annotations

from flowledger.instrument._config import Settings
from flowledger.instrument._context import ContextThreadPoolExecutor, in_context
from flowledger.instrument._cost import Cost, CostCategory, Penalty
from flowledger.instrument._decorator import node
from flowledger.instrument._fixed import FixedAttributes
from flowledger.instrument._node import (
    Location,
    NodeAttempt,
    artifact,
    attempt,
    cost,
    current_node,
    metric,
    record_skip,
)
from flowledger.instrument._otel import inject, traceparent
from flowledger.instrument._pipeline import configure, flush, shutdown, stats
from flowledger.instrument._remote import continue_run, run_context
from flowledger.instrument._run import Run, current_run, run
from flowledger.instrument.delivery import EventSink

__all__ = [
    "ContextThreadPoolExecutor",
    "Cost",
    "CostCategory",
    "EventSink",
    "FixedAttributes",
    "Location",
    "NodeAttempt",
    "Penalty",
    "Run",
    "Settings",
    "artifact",
    "attempt",
    "configure",
    "continue_run",
    "cost",
    "current_node",
    "current_run",
    "flush",
    "in_context",
    "inject",
    "metric",
    "node",
    "record_skip",
    "run",
    "run_context",
    "shutdown",
    "stats",
    "traceparent",
]
