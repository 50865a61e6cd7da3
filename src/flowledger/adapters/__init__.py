"""Adapters: record the runs of runtimes users already have (Prefect, LangGraph, Celery, your own).

:class:`Recorder` is the interface every adapter is written against: the
runtime's run and task events, keyed by the runtime's own ids, become
flowledger runs and node attempts. The built-in adapters are modules of
their own, imported on purpose (``import flowledger`` imports none of them,
nor their runtimes)::

    from flowledger.adapters import prefect      # needs flowledger[prefect]
    from flowledger.adapters import langgraph    # needs flowledger[langgraph]
    from flowledger.adapters import celery       # needs flowledger[celery]

``docs/adapters.md`` shows how to write one for another runtime.
"""

from __future__ import annotations

from flowledger._exceptions import ReportedFailure
from flowledger.adapters._base import UNSET, Cost, Recorder

__all__ = ["UNSET", "Cost", "Recorder", "ReportedFailure"]
