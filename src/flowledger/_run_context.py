"""The run context: who a run is for, which agent ran it, why, in which project, started by which run.

``flowledger.run(..., project=, user_id=, agent_id=, intent=, parent_run_id=)``
sets them; ``configure(project=, user_id=, agent_id=)`` and
``FLOWLEDGER_PROJECT`` / ``FLOWLEDGER_USER_ID`` / ``FLOWLEDGER_AGENT_ID``
give the defaults. A run started inside another run (in this process, or in a
part of it continued elsewhere) records that run as its parent and, unless
told otherwise, shares its project and user.

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
    "CONTEXT_MAX_CHARS",
    "PROJECT_PATTERN",
    "RUN_ID_PATTERN",
    "context_problem",
    "project_problem",
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
