"""The public surface: what each public module offers, and what ``import flowledger`` does not pull in."""

from __future__ import annotations

import importlib
import subprocess
import sys
import types

import pytest

import flowledger
import flowledger.instrument

PUBLIC: dict[str, list[str]] = {
    "flowledger": [
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
    ],
    "flowledger.instrument": [
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
    ],
    "flowledger.instrument.delivery": ["DropReason", "EventSink", "OtlpProtocol", "Sender", "Spool", "SpoolResult"],
    "flowledger.workflow": [
        "DEFAULT_ATTEMPTS",
        "DEFAULT_BACKOFF_FACTOR",
        "DEFAULT_BACKOFF_S",
        "DEFAULT_EFFECT",
        "DEFAULT_HTTP_METHOD",
        "DEFAULT_MAP_CONCURRENCY",
        "DEFAULT_MAX_BACKOFF_S",
        "DEFAULT_ON_ERROR",
        "CaptureMode",
        "Call",
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
    ],
    "flowledger.workflow.executors": [
        "DEFAULT_EXECUTOR",
        "EXECUTORS",
        "EXECUTOR_ENV",
        "Executor",
        "LocalExecutor",
        "NodeLost",
        "RemoteNodeError",
        "executor_named",
    ],
    "flowledger.codegen": ["Definition", "GenerationError", "generate", "load"],
    "flowledger.testing": ["CapturedEvents", "MemorySink", "capture_events", "memory_sink"],
    "flowledger.adapters": ["UNSET", "Cost", "Recorder", "ReportedFailure"],
    "flowledger.adapters.prefect": ["flow_traceparent", "instrument", "recorder"],
    "flowledger.adapters.langgraph": ["FlowledgerCallbackHandler", "callbacks", "instrument"],
    "flowledger.adapters.celery": [
        "FLUSH_TIMEOUT_S",
        "HEADER_RUN_ID",
        "HEADER_TRACEPARENT",
        "HEADER_WORKFLOW_ID",
        "instrument",
        "recorder",
    ],
}


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_all_of_each_public_module_is_its_documented_surface(name: str) -> None:
    """Each public module's __all__ is exactly the expected list, and every listed name exists."""
    module = importlib.import_module(name)
    assert sorted(module.__all__) == sorted(PUBLIC[name])
    for attr in module.__all__:
        assert getattr(module, attr) is not None


@pytest.mark.parametrize("name", sorted(n for n in PUBLIC if n != "flowledger.testing" and n.count(".") < 2))
def test_a_package_exposes_no_flowledger_name_outside_its_all(name: str) -> None:
    """A package's __init__ only re-exports: every flowledger object it holds under a public name is in __all__."""
    module = importlib.import_module(name)
    leaked = sorted(
        attr
        for attr in dir(module)
        if not attr.startswith("_")
        and not isinstance(getattr(module, attr), types.ModuleType)
        and str(getattr(getattr(module, attr), "__module__", "")).startswith("flowledger")
        and attr not in module.__all__
    )
    assert leaked == []


def test_all_lists_exactly_the_public_names() -> None:
    """flowledger.__all__ is the public API, and every listed name exists."""
    public = {name for name in dir(flowledger) if not name.startswith("_")} - {
        "instrument",
        "testing",
        "cli",
        "codegen",
        "receiver",
        "schemas",
        "workflow",
        "adapters",
        "annotations",
    }
    assert set(flowledger.__all__) - {"__version__"} == public
    for name in flowledger.instrument.__all__:
        assert hasattr(flowledger.instrument, name)


def test_contract_api_is_present() -> None:
    """run, node, cost, flush, configure, shutdown and stats exist as the contract names them."""
    for name in ("run", "node", "cost", "flush", "configure", "shutdown", "stats"):
        assert callable(getattr(flowledger, name))


def test_importing_the_sdk_does_not_import_the_receiver_stack() -> None:
    """A workflow that imports flowledger (and its runtime and executors) loads no server, codegen, CLI or engine."""
    code = (
        "import sys, flowledger, flowledger.workflow, flowledger.workflow.executors\n"
        "flowledger.workflow.executors.executor_named('local')\n"
        "heavy = ('starlette', 'uvicorn', 'aiosqlite', 'jinja2', 'yaml', 'click', 'rich', 'fastjsonschema',\n"
        "         'prefect', 'langgraph', 'langchain_core', 'celery', 'kombu', 'billiard', 'redis', 'asyncpg',\n"
        "         'msgspec', 'jsonschema_rs')\n"
        "assert not [m for m in sys.modules if m.startswith('flowledger.adapters')], 'an adapter was imported'\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_adapter_modules_import_their_runtime_only_when_used() -> None:
    """Importing the Prefect and Celery adapters loads neither runtime; they are imported when instrument() runs."""
    code = (
        "import sys\n"
        "import flowledger.adapters, flowledger.adapters.prefect, flowledger.adapters.celery\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'prefect', 'celery', 'kombu', 'langgraph'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_exported_exceptions_go_by_their_public_name() -> None:
    """Each exception a public module exports names that module as its own, as users import it."""
    from flowledger import _exceptions

    exported = 0
    for module_name in (
        "flowledger",
        "flowledger.workflow",
        "flowledger.codegen",
        "flowledger.instrument",
        "flowledger.adapters",
        "flowledger.workflow.executors",
    ):
        module = importlib.import_module(module_name)
        for name in module.__all__:
            value = getattr(module, name)
            ours = isinstance(value, type) and value.__module__.startswith("flowledger")
            if ours and issubclass(value, BaseException):
                assert getattr(importlib.import_module(value.__module__), name) is value
                assert not any(part.startswith("_") for part in value.__module__.split(".")), value
                exported += 1
    declared: list[type[BaseException]] = [getattr(_exceptions, name) for name in _exceptions.__all__]
    renamed = [cls for cls in declared if cls.__module__ != _exceptions.__name__]
    for cls in renamed:  # each exception given a public home is exported there
        assert cls.__name__ in importlib.import_module(cls.__module__).__all__, cls
    assert exported >= len(renamed) >= 10


def test_the_exception_hierarchy_drawn_is_the_one_defined() -> None:
    """The tree in _exceptions' docstring names every exception once, under the class it derives from."""
    import re

    from flowledger import _exceptions

    drawn: dict[str, str | None] = {}
    parents: list[str] = []
    for line in (_exceptions.__doc__ or "").splitlines():
        found = re.match(r"^    ((?:[│ ]   )*)(?:[├└]── )?([A-Z]\w+Error|[A-Z]\w+)\s{2,}", line)
        if found is None:
            continue
        depth = len(found.group(1)) // 4 + (1 if "──" in line else 0)
        del parents[depth:]
        drawn[found.group(2)] = parents[-1] if parents else None
        parents.append(found.group(2))
    defined = {
        name: (None if cls.__bases__[0] is Exception else cls.__bases__[0].__name__)
        for name in _exceptions.__all__
        if isinstance(cls := getattr(_exceptions, name), type)
    }
    assert drawn == defined


def test_exceptions_are_named_for_what_failed_not_for_a_stage() -> None:
    """No exception is named after the receiver stage that first raised it (the store raises QueryError for all)."""
    from flowledger import _exceptions

    stages = ("Ingest", "Viewer", "Api", "Cli")
    assert [name for name in _exceptions.__all__ if name.startswith(stages)] == []
