"""The run context: who a run is for, which agent ran it, why, in which project, started by which run.

``flowledger.run(..., project=, user_id=, agent_id=, intent=, parent_run_id=)``
sets them; ``configure(project=, user_id=, agent_id=)`` and
``FLOWLEDGER_PROJECT`` / ``FLOWLEDGER_USER_ID`` / ``FLOWLEDGER_AGENT_ID``
give the defaults. A run started inside another run (in this process, or in a
part of it continued elsewhere) records that run as its parent and, unless
told otherwise, shares its project and user. An http node tells the service
it calls which run it belongs to in the W3C ``baggage`` header
(``flowledger.run_id=<id>``, beside the ``traceparent``), and a generated
workflow started over HTTP records that run as its parent.

The bounds are the wire schema's (``events.v1.schema.json``; a test holds
them equal), and the receiver checks its filters (``?user_id=``...) by them
too. A value the receiver would refuse would cost the whole
``run_started``, so the SDK checks each value first. ``configure()`` raises
for a bad one, an environment variable is reported and ignored (see
:mod:`._config`), and a bad argument of ``run()`` is reported once and left
out: recording never fails the workflow.
"""

from __future__ import annotations

import logging
import re
from typing import Final

__all__ = [
    "BAGGAGE_RUN_ID_KEY",
    "CONTEXT_MAX_CHARS",
    "PROJECT_PATTERN",
    "RUN_ID_PATTERN",
    "baggage_with_run_id",
    "context_problem",
    "project_problem",
    "run_id_from_baggage",
    "run_id_problem",
    "usable",
]

_log = logging.getLogger("flowledger")

CONTEXT_MAX_CHARS: Final = 256
"""Longest ``user_id``, ``agent_id`` or ``intent``."""
PROJECT_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
"""A project name (the envelope's ``project``): 1 to 128 letters, digits, ``_``, ``.`` or ``-``, not leading."""
RUN_ID_PATTERN: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
"""A run id (``parent_run_id``): a lowercase UUID."""
BAGGAGE_RUN_ID_KEY: Final = "flowledger.run_id"
"""The W3C ``baggage`` entry that carries the calling run's id to a workflow started over HTTP."""
BAGGAGE_MAX_CHARS: Final = 8192
"""A ``baggage`` header longer than this is not read (W3C asks for at least 8192 bytes to be kept)."""
_reported: set[str] = set()


def context_problem(name: str, value: object) -> str | None:
    """What is wrong with a ``user_id``, ``agent_id`` or ``intent`` value (None when it is usable)."""
    if not isinstance(value, str):
        return f"{name} must be a string, not {type(value).__name__}"
    if not value:
        return f"{name} must not be empty"
    if len(value) > CONTEXT_MAX_CHARS:
        return f"{name} is {len(value)} characters long, over the limit of {CONTEXT_MAX_CHARS}"
    return None


def project_problem(name: str, value: object) -> str | None:
    """What is wrong with a project name (None when it is usable)."""
    if not isinstance(value, str):
        return f"{name} must be a string, not {type(value).__name__}"
    if PROJECT_PATTERN.fullmatch(value) is None:
        return (
            f"{name} {value[:CONTEXT_MAX_CHARS]!r} is not a project name: "
            "1 to 128 letters, digits, _ . or -, starting with a letter or digit"
        )
    return None


def run_id_problem(name: str, value: object) -> str | None:
    """What is wrong with a run id (None when it is usable)."""
    if not isinstance(value, str):
        return f"{name} must be a string, not {type(value).__name__}"
    if RUN_ID_PATTERN.fullmatch(value) is None:
        return f"{name} {value[:64]!r} is not a run id (a lowercase UUID)"
    return None


def usable(name: str, value: object) -> str | None:
    """``value`` for the run's ``name`` field when the wire format takes it; otherwise None, reported once."""
    if value is None:
        return None
    if name == "project":
        problem = project_problem(name, value)
    elif name == "parent_run_id":
        problem = run_id_problem(name, value)
    else:
        problem = context_problem(name, value)
    if problem is None:
        return value if isinstance(value, str) else None
    if name not in _reported:
        _reported.add(name)
        _log.warning("flowledger: run(%s=...) left out: %s.", name, problem)
    return None


def baggage_with_run_id(baggage: str | None, run_id: str) -> str:
    """A W3C ``baggage`` header value that carries ``run_id`` (any entry of that key replaced, others kept)."""
    kept = [
        member.strip()
        for member in (baggage or "").split(",")
        if member.strip() and member.split("=", 1)[0].strip() != BAGGAGE_RUN_ID_KEY
    ]
    return ",".join([*kept, f"{BAGGAGE_RUN_ID_KEY}={run_id}"])


def run_id_from_baggage(baggage: str | None) -> str | None:
    """The calling run's id from a W3C ``baggage`` header, or None when it has none (or not a run id)."""
    if not baggage or len(baggage) > BAGGAGE_MAX_CHARS:
        return None
    for member in baggage.split(","):
        key, sep, value = member.partition("=")
        if sep and key.strip() == BAGGAGE_RUN_ID_KEY:
            candidate = value.split(";", 1)[0].strip()
            return candidate if RUN_ID_PATTERN.fullmatch(candidate) else None
    return None
