"""Query parameters of the receiver's routes, read by one set of rules for the API and the viewer.

Every problem is a :class:`~flowledger._exceptions.QueryParamError` whose
message names the parameter; the routes answer it with 400. The page caps
stay with the routes that document them (``/api/runs``: 1000 runs a page;
``/api/viewer/runs``: 500; a viewer page of node attempts: 2000).
"""

from __future__ import annotations

import enum
from typing import Final, TypeVar

from starlette.requests import Request

from flowledger._exceptions import QueryParamError
from flowledger.receiver.store._time import normalize_ts

__all__ = ["MAX_OFFSET", "MAX_PARAM_CHARS", "PARAMS_READ_KEY", "QueryParams"]

MAX_PARAM_CHARS: Final = 256
"""Longest value a text parameter may have."""
MAX_OFFSET: Final = 2**62
"""Largest ``offset`` a paged route takes."""
PARAMS_READ_KEY: Final = "flowledger.query_params_read"
"""Where a request's scope keeps the names of the query parameters its route read (the OpenAPI test checks them)."""

_E = TypeVar("_E", bound=enum.Enum)


class QueryParams:
    """The query parameters of one request.

    ``blank_is_absent``: a parameter given with an empty value (``?status=``)
    counts as not given; the viewer's page sends its cleared filters that
    way. Without it (the query API) an empty value is a value: an empty text,
    or a 400 for a number or a choice.
    """

    def __init__(self, request: Request, *, blank_is_absent: bool = True) -> None:
        self._params = request.query_params
        self._blank_is_absent = blank_is_absent
        self._read: set[str] = request.scope.setdefault(PARAMS_READ_KEY, set())

    def text(self, name: str) -> str | None:
        """The parameter's value, or None when it is not given."""
        self._read.add(name)
        raw = self._params.get(name)
        if raw is None or (raw == "" and self._blank_is_absent):
            return None
        if len(raw) > MAX_PARAM_CHARS:
            raise QueryParamError(f"query parameter {name} is longer than {MAX_PARAM_CHARS} characters")
        return raw

    def texts(self, name: str) -> list[str]:
        """Every value of a parameter that may repeat (``?checkpoint=a&checkpoint=b``), in order."""
        self._read.add(name)
        values = self._params.getlist(name)
        for raw in values:
            if len(raw) > MAX_PARAM_CHARS:
                raise QueryParamError(f"query parameter {name} is longer than {MAX_PARAM_CHARS} characters")
        return values

    def choice(self, name: str, kind: type[_E]) -> _E | None:
        """The member of the enum ``kind`` whose value the parameter gives, or None when it is not given."""
        raw = self.text(name)
        if raw is None:
            return None
        try:
            return kind(raw)
        except ValueError:
            allowed = ", ".join(str(member.value) for member in kind)
            raise QueryParamError(f"query parameter {name}={raw!r} is not one of {allowed}") from None

    def integer(self, name: str, *, default: int, low: int, high: int) -> int:
        """A whole number from ``low`` to ``high``; ``default`` when it is not given."""
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise QueryParamError(f"query parameter {name}={raw!r} is not a whole number") from None
        if not low <= value <= high:
            raise QueryParamError(f"query parameter {name}={value} must be between {low} and {high}")
        return value

    def time(self, name: str) -> str | None:
        """An RFC 3339 time with an offset, normalised to UTC with microseconds; None when it is not given."""
        raw = self.text(name)
        if raw is None:
            return None
        try:
            return normalize_ts(raw)
        except ValueError:
            raise QueryParamError(
                f"query parameter {name}={raw!r} is not an RFC 3339 time with an offset, like 2026-01-31T08:00:00Z"
            ) from None
