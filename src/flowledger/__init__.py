"""flowledger: workflow runs that report on themselves.

The public API of the runtime SDK::

    import flowledger

    with flowledger.run("order-intake", data=payload) as run:
        price(order)          # a function decorated with @flowledger.node

See the README for the rest.
"""

from __future__ import annotations

from flowledger._exceptions import (
    ConfigError,
    DefinitionError,
    FlowledgerError,
    NodeTimeout,
    RunAborted,
    RuntimeFailure,
    UsageError,
    WorkflowFailed,
)
from flowledger._version import __version__
from flowledger._wire import AbortReason, EventKind, NodeStatus, RunStatus, TriggerType
from flowledger.instrument import (
    ContextThreadPoolExecutor,
    Cost,
    CostCategory,
    Location,
    Penalty,
    Run,
    Settings,
    artifact,
    configure,
    cost,
    current_run,
    flush,
    in_context,
    inject,
    metric,
    node,
    run,
    shutdown,
    stats,
    traceparent,
)

__all__ = [
    "AbortReason",
    "ConfigError",
    "ContextThreadPoolExecutor",
    "Cost",
    "CostCategory",
    "DefinitionError",
    "EventKind",
    "FlowledgerError",
    "Location",
    "NodeStatus",
    "NodeTimeout",
    "Penalty",
    "Run",
    "RunAborted",
    "RunStatus",
    "RuntimeFailure",
    "Settings",
    "TriggerType",
    "UsageError",
    "WorkflowFailed",
    "__version__",
    "artifact",
    "configure",
    "cost",
    "current_run",
    "flush",
    "in_context",
    "inject",
    "metric",
    "node",
    "run",
    "shutdown",
    "stats",
    "traceparent",
]
