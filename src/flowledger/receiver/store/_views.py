"""The viewer's side of the ``Store`` protocol: filters, keyset cursors and pages of runs.

Every engine answers the viewer's queries with these types; the SQLite
engine's SQL is in :mod:`flowledger.receiver.store._viewer_query`.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from flowledger._exceptions import QueryError
from flowledger._wire import RunStatus, TriggerType
from flowledger.receiver.store._run_filter import RunContextFilter
from flowledger.receiver.store._time import normalize_ts

__all__ = [
    "CURSOR_MAX_CHARS",
    "INLINE_PAYLOAD_MAX_CHARS",
    "PERCENTILE_SAMPLE_MAX",
    "RUN_ID_SEARCH_MAX_MATCHES",
    "RUN_ID_SEARCH_MIN_CHARS",
    "RUN_PAYLOAD_KINDS",
    "PageDirection",
    "PayloadKind",
    "RunFilter",
    "RunListPage",
    "RunMode",
    "RunPageCursor",
]

CURSOR_MAX_CHARS: Final = 512
"""The longest cursor token a listing takes back: one on a run of a 128-character project name is about 270."""
INLINE_PAYLOAD_MAX_CHARS: Final = 64 * 1024
"""A payload whose JSON text is longer than this is left out of an answer and loaded on demand."""
PERCENTILE_SAMPLE_MAX: Final = 50_000
"""p50/p95 are taken over at most this many of the newest matching runs (exact below it)."""
RUN_ID_SEARCH_MIN_CHARS: Final = 4
"""A run-id search needs at least this many characters (fewer would match nearly every run)."""
RUN_ID_SEARCH_MAX_MATCHES: Final = 10_000
"""A run-id search matching more runs than this is refused (QueryError): type more of the id. Run ids
are UUIDv7, so a short prefix is a wide time window; with this cap a search reads and sorts at most this many."""


class PayloadKind(enum.StrEnum):
    """A payload that can be loaded on its own: a node attempt has all three, a run its input and output."""

    INPUT = "input"
    OUTPUT = "output"
    ERROR_STACK = "error_stack"
    """A node attempt's stack, answered as a JSON string."""


RUN_PAYLOAD_KINDS: Final = (PayloadKind.INPUT, PayloadKind.OUTPUT)
"""The payloads a run has."""


class RunMode(enum.StrEnum):
    """Dry runs (effects simulated) or live runs."""

    DRY = "dry"
    LIVE = "live"


class PageDirection(enum.StrEnum):
    """Which way a keyset page goes from its cursor."""

    OLDER = "older"
    NEWER = "newer"


@dataclass(frozen=True, slots=True)
class RunPageCursor:
    """A position in the run order: newest first, then by run id, then by project (a run is ``(project,
    run_id)``, so two projects' runs of one id started at the same instant each have a position of their own).

    The token of a cursor made before the project was part of the order holds no project: it is still
    accepted and stands after every project's run of its start time and id, as it did when it was made.
    """

    started_at: str
    """The run's start time ('' for a run without one: those come last)."""
    run_id: str
    namespace: str | None = None
    """The run's project, '' for none; None for an old token (see above)."""

    @classmethod
    def of(cls, run: Mapping[str, Any]) -> RunPageCursor:
        """The position of ``run`` (its API shape: ``started_at``, ``run_id``, ``project``)."""
        return cls(run["started_at"] or "", run["run_id"], run["project"] or "")

    def encode(self) -> str:
        """An opaque URL-safe token."""
        key = [self.started_at, self.run_id] + ([] if self.namespace is None else [self.namespace])
        raw = json.dumps(key, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> RunPageCursor:
        """Read a token made by :meth:`encode` (or by a receiver before the order had the project); QueryError
        when it is not one."""
        refused = QueryError(f"cursor {token[:40]!r} is not a cursor this receiver made")
        try:
            key = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        except (binascii.Error, ValueError):
            raise refused from None
        if not isinstance(key, list) or len(key) not in (2, 3) or not all(_storable(part) for part in key):
            raise refused
        if key[0] and not _stored_time(key[0]):  # a start time as the store keeps it, or '' for none
            raise refused
        return cls(*key)


def _stored_time(text: str) -> bool:
    """Whether ``text`` is a timestamp in the form the store keeps (what a cursor's start time always is)."""
    try:
        return normalize_ts(text) == text
    except ValueError:
        return False


def _storable(part: object) -> bool:
    """A text a database can compare: no NUL, no lone surrogate (an escape in the JSON can make either)."""
    if not isinstance(part, str) or "\x00" in part:
        return False
    try:
        part.encode()
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFilter:
    """What the run list and its summary cards are narrowed to."""

    workflow_id: str | None = None
    status: RunStatus | None = None
    trigger: TriggerType | None = None
    mode: RunMode | None = None
    since: str | None = None
    """Runs started at or after this normalised timestamp."""
    until: str | None = None
    """Runs started before this normalised timestamp."""
    run_id_prefix: str | None = None
    project: str | None = None
    """Set from the API key: only this project's runs are visible."""
    text: str | None = None
    """Full text: runs whose errors, log lines or payload text hold these words. With ``run_id_prefix`` too
    (a search that looks like a run id), the store keeps whichever matches: the id when a run has it."""
    context: RunContextFilter = field(default_factory=RunContextFilter)
    """Project asked for, user, agent, intent and parent run (its own ``since``/``until`` stay unset)."""


@dataclass(frozen=True, slots=True)
class RunListPage:
    """One keyset page of runs, newest first, with cursors to the pages on either side."""

    runs: list[dict[str, Any]]
    older: RunPageCursor | None
    """Pass as ``cursor`` with direction ``older`` for the next page; None on the last page."""
    newer: RunPageCursor | None
    """Pass as ``cursor`` with direction ``newer`` for the previous page; None on the first page."""

    def as_json(self) -> dict[str, Any]:
        """The JSON answer of ``GET /api/viewer/runs``."""
        return {
            "runs": self.runs,
            "older": None if self.older is None else self.older.encode(),
            "newer": None if self.newer is None else self.newer.encode(),
        }
