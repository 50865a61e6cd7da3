"""Continuing a run in another process: the run's context out, a continued run in.

An executor that runs a node on another machine carries the run's context
with the work (:func:`run_context`: a small JSON object with the run id, the
run span's W3C ``traceparent``, dry run, what is left of the deadline and
budget, and the run's project and user). The worker opens :func:`continue_run` with it: inside, the node
attempts it records belong to that run and nest under its span, as if they
ran in the process that started it. A continued run records no
``run_started``, ``run_finished`` or heartbeat of its own (the process that
started the run does); its cost is the cost of what ran inside it, which the
caller hands back to the run.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

from opentelemetry import context as otel_context

from flowledger._run_context import usable
from flowledger.instrument._otel import app_tracer, context_from_traceparent
from flowledger.instrument._pipeline import pipeline
from flowledger.instrument._run import Run, _current_run, current_run

__all__ = ["continue_run", "run_context"]

CONTINUED_SEQ_START: Final = 1 << 40
"""Sequence numbers of a continued run's events start here, apart from those of the process that started it."""


def run_context(run: Run | None = None) -> dict[str, Any] | None:
    """What :func:`continue_run` needs to continue ``run`` (default: the current run); None outside a run."""
    run = run if run is not None else current_run()
    if run is None or not run.active or not run.run_id:
        return None
    remaining = run.remaining_s()
    return {
        "run_id": run.run_id,
        "workflow_id": run.workflow_id,
        "traceparent": f"00-{run.trace_id}-{run.span_id}-01",
        "dry_run": run.dry_run,
        "deadline_s": remaining,
        "budget_usd": None if run.budget_usd is None else max(run.budget_usd - run.cost.usd, 0.0),
        "definition_sha256": run.definition_sha256,
        "project": run.project or "",  # '': none, so that a part does not take its worker's default
        "user_id": run.user_id,
    }


@contextmanager
def continue_run(context: dict[str, Any] | None) -> Iterator[Run | None]:
    """Make the run of ``context`` (from :func:`run_context`) current here; yields None when it cannot be.

    Never raises for a bad or missing context: the work inside still runs,
    unrecorded (or recorded as a run of its own by the hooks).
    """
    run = _continued(context) if context else None
    if run is None:
        yield None
        return
    parent = context_from_traceparent(context.get("traceparent") if context else None)
    otel_token = otel_context.attach(parent) if parent is not None else None
    token = _current_run.set(run)
    try:
        yield run
    finally:
        _current_run.reset(token)
        if otel_token is not None:
            otel_context.detach(otel_token)


def _continued(context: dict[str, Any]) -> Run | None:
    p = pipeline()
    if p.disabled:
        return None
    try:
        run = Run(
            str(context["workflow_id"]),
            dry_run=bool(context.get("dry_run")),
            definition_sha256=context.get("definition_sha256"),
            traceparent=context.get("traceparent"),
            project=context.get("project"),  # '' (no project) stays none; a context without one: the defaults'
        )
        run.run_id = str(context["run_id"])
        run.user_id = usable("user_id", context.get("user_id"))
        parts = str(context.get("traceparent") or "").split("-")
        if len(parts) == 4:
            run.trace_id, run.span_id = parts[1], parts[2]
        deadline_s = context.get("deadline_s")
        if deadline_s is not None:
            run.deadline_s = float(deadline_s)
            run._deadline_at = time.monotonic() + float(deadline_s)
        budget = context.get("budget_usd")
        run.budget_usd = None if budget is None else float(budget)
        run._pipeline = p
        run._seq = itertools.count(CONTINUED_SEQ_START)
        run.tracer = app_tracer(p.settings)
        run.active = True
        return run
    except Exception as exc:  # a context from elsewhere: never fail the work over it
        p.internal_error("continue_run", exc)
        return None
