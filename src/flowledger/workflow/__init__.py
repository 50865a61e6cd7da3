"""The runtime of generated workflows: specs, execution, attempts, http nodes, triggers.

A generated module imports this package only (``from flowledger import
workflow as fw``): it declares a :class:`Workflow` of :class:`Node` specs,
runs it with :func:`execute`, and starts runs from the command line with
:func:`main` (or over HTTP with :func:`http_app`). Every node attempt is
recorded through :mod:`flowledger.instrument`'s hooks.
"""

from __future__ import annotations

from flowledger._exceptions import HttpNodeError, ResumeRefused
from flowledger._wire import CaptureMode
from flowledger.workflow._execute import Execution, RunResult, execute, execute_run
from flowledger.workflow._resume import ResumePlan, plan_resume
from flowledger.workflow._spec import (
    DEFAULT_ATTEMPTS,
    DEFAULT_BACKOFF_FACTOR,
    DEFAULT_BACKOFF_S,
    DEFAULT_EFFECT,
    DEFAULT_HTTP_METHOD,
    DEFAULT_MAP_CONCURRENCY,
    DEFAULT_MAX_BACKOFF_S,
    DEFAULT_ON_ERROR,
    Call,
    Env,
    Http,
    HttpMethod,
    HttpTrigger,
    Limits,
    Manual,
    Map,
    Node,
    OnError,
    Phase,
    Retry,
    Schedule,
    Workflow,
)
from flowledger.workflow._triggers import http_app, main, next_cron_time, serve_schedule

__all__ = [
    "DEFAULT_ATTEMPTS",
    "DEFAULT_BACKOFF_FACTOR",
    "DEFAULT_BACKOFF_S",
    "DEFAULT_EFFECT",
    "DEFAULT_HTTP_METHOD",
    "DEFAULT_MAP_CONCURRENCY",
    "DEFAULT_MAX_BACKOFF_S",
    "DEFAULT_ON_ERROR",
    "Call",
    "CaptureMode",
    "Env",
    "Execution",
    "Http",
    "HttpMethod",
    "HttpNodeError",
    "HttpTrigger",
    "Limits",
    "Manual",
    "Map",
    "Node",
    "OnError",
    "Phase",
    "ResumePlan",
    "ResumeRefused",
    "Retry",
    "RunResult",
    "Schedule",
    "Workflow",
    "execute",
    "execute_run",
    "http_app",
    "main",
    "next_cron_time",
    "plan_resume",
    "serve_schedule",
]
