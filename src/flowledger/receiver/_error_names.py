"""Showing flowledger's own exception types by their public names.

A producer records an error's type as its full class path, and flowledger's
exceptions live in a private module: ``flowledger._exceptions.RunAborted``.
The ledger keeps what the producer sent; :func:`public_error_type` translates
it where it is shown (the CLI's ``show`` and ``runs``, the query API, the
viewer) to the name a user can import: ``flowledger.RunAborted``.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["PUBLIC_EXCEPTIONS", "public_error_type", "public_error_types"]

PUBLIC_EXCEPTIONS: Final = {
    "FlowledgerError": "flowledger",
    "UsageError": "flowledger",
    "ConfigError": "flowledger",
    "DefinitionError": "flowledger",
    "RuntimeFailure": "flowledger",
    "RunAborted": "flowledger",
    "NodeTimeout": "flowledger",
    "WorkflowFailed": "flowledger",
    "HttpNodeError": "flowledger.workflow",
    "ResumeRefused": "flowledger.workflow",
    "GenerationError": "flowledger.codegen",
    "ReportedFailure": "flowledger.adapters",
    "RemoteNodeError": "flowledger.workflow.executors",
    "NodeLost": "flowledger.workflow.executors",
}
"""Each exception of ``flowledger._exceptions`` that a public module exports, and that module
(a test ties this to the modules' ``__all__``)."""
_ROOT: Final = "flowledger."


def public_error_type(name: str) -> str:
    """``flowledger.RunAborted`` for ``flowledger._exceptions.RunAborted`` (or any private path to a public
    flowledger exception); every other name as it is."""
    if not name.startswith(_ROOT):
        return name
    module, _, leaf = name.rpartition(".")
    public = PUBLIC_EXCEPTIONS.get(leaf)
    if public is None or module == public or not any(part.startswith("_") for part in module.split(".")):
        return name
    return f"{public}.{leaf}"


def public_error_types(value: Any) -> Any:
    """``value`` (a run, a node attempt, a page of them: JSON-like) with every ``error.type`` shown publicly.

    Changes the dicts in place and returns ``value``.
    """
    if isinstance(value, dict):
        error = value.get("error")
        if isinstance(error, dict) and isinstance(error.get("type"), str):
            error["type"] = public_error_type(error["type"])
        for item in value.values():
            if isinstance(item, dict | list):
                public_error_types(item)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict | list):
                public_error_types(item)
    return value
