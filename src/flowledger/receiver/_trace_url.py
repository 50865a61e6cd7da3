"""Links from a run to its trace in an external tracing backend.

``FLOWLEDGER_TRACE_URL_TEMPLATE`` is a URL with ``{trace_id}`` in it (and
optionally ``{run_id}``), for example ``http://jaeger:16686/trace/{trace_id}``.
The query API adds the filled-in URL to every run as ``trace_url`` and
``flowledger show`` prints it. Only those two placeholders are replaced;
every other character of the template is kept as written.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import quote

__all__ = ["RUN_ID_PLACEHOLDER", "TRACE_ID_PLACEHOLDER", "add_trace_url", "trace_url"]

TRACE_ID_PLACEHOLDER: Final = "{trace_id}"
"""Replaced by the run's trace id; a template must hold it (checked in :mod:`._config`)."""
RUN_ID_PLACEHOLDER: Final = "{run_id}"
"""Replaced by the run's id (optional)."""


def trace_url(template: str | None, trace_id: str | None, run_id: str | None = None) -> str | None:
    """The template filled in for one run; None without a template or a trace id."""
    if not template or not trace_id:
        return None
    filled = template.replace(TRACE_ID_PLACEHOLDER, quote(trace_id, safe=""))
    return filled.replace(RUN_ID_PLACEHOLDER, quote(run_id or "", safe=""))


def add_trace_url(run: dict[str, Any], template: str | None) -> dict[str, Any]:
    """Set ``run["trace_url"]`` from the template (None when there is none) and return the run."""
    run["trace_url"] = trace_url(template, run.get("trace_id"), run.get("run_id"))
    return run
