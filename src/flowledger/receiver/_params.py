"""Query parameters of the receiver's routes, read by one set of rules for the API and the viewer.

Every problem is a :class:`~flowledger._exceptions.QueryParamError` whose
message names the parameter; the routes answer it with 400. A route names
the parameters it takes (:meth:`QueryParams.expect`): any other one is a 400
naming it, so a misspelt filter (``?workflow=x``) is never silently ignored.
A parameter is given at most once, except those a route reads as a list
(:meth:`QueryParams.choices`, like ``?status=failed&status=aborted``). The page caps
stay with the routes that document them (``/api/runs``: 1000 runs a page;
``/api/viewer/runs``: 500; a viewer page of node attempts: 2000).

A time parameter is an RFC 3339 date-time and nothing else (:func:`rfc3339_time`, which the CLI's
``--since``/``--until`` use too): ISO 8601's other spellings (``20260301T000000Z``, a space for the
``T``, no offset) are a 400, never read as some time.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final, TypeVar

from flowledger._exceptions import QueryParamError
from flowledger._wire import format_datetime
from flowledger.receiver.store._search import ATTRIBUTE_PARAM_PREFIX, ATTRIBUTE_VALUE_MAX_CHARS
from flowledger.receiver.store._time import normalize_ts

if TYPE_CHECKING:
    from starlette.requests import Request

__all__ = [
    "LABEL_FILTER",
    "MAX_LABEL_FILTERS",
    "MAX_OFFSET",
    "MAX_PARAM_CHARS",
    "MAX_UNKNOWN_LISTED",
    "METRIC_NAME_PATTERN",
    "PARAMS_READ_KEY",
    "RFC3339_EXAMPLE",
    "QueryParams",
    "id_text_problem",
    "label_filters",
    "label_problem",
    "length_problem",
    "max_chars_of",
    "metric_name_problem",
    "refuse_params",
    "rfc3339_time",
]

MAX_PARAM_CHARS: Final = 256
"""Longest value a text parameter may have, but an ``attr.KEY`` filter's (:func:`max_chars_of`)."""
MAX_OFFSET: Final = 2**62
"""Largest ``offset`` a paged route takes."""
PARAMS_READ_KEY: Final = "flowledger.query_params_read"
"""Where a request's scope keeps the names of the query parameters its route read (the OpenAPI test checks them)."""
MAX_UNKNOWN_LISTED: Final = 10
"""How many unknown parameters a 400 names (and then how many more there were)."""

RFC3339_EXAMPLE: Final = "2026-01-31T08:00:00Z"
"""A time as a time parameter takes it; messages show it."""
_RFC3339: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)
"""RFC 3339's ``date-time``: a ``T`` (or ``t``), seconds, an optional fraction after a dot, ``Z`` (or ``z``) or
``+HH:MM``/``-HH:MM``; ASCII digits only."""

_E = TypeVar("_E", bound=enum.Enum)


def max_chars_of(name: str) -> int:
    """Longest value the parameter ``name`` may have: MAX_PARAM_CHARS, but an ``attr.KEY`` filter's value may be
    as long as an indexed attribute value (ATTRIBUTE_VALUE_MAX_CHARS), so that every value a run can be
    found by can be asked for (its route checks the rest with ``attribute_problem``)."""
    return ATTRIBUTE_VALUE_MAX_CHARS if name.startswith(ATTRIBUTE_PARAM_PREFIX) else MAX_PARAM_CHARS


METRIC_NAME_PATTERN: Final = "^[A-Za-z_][A-Za-z0-9_]{0,127}$"
"""A custom metric's name, as ``GET /api/metrics/custom?name=`` and ``flowledger metrics --name`` take it."""
LABEL_FILTER: Final = re.compile(r"([A-Za-z_][A-Za-z0-9_]{0,63})=(.{0,128})", re.DOTALL)
"""A label filter ``NAME=VALUE`` (``?label=``, ``--label``): a label name, and a value of at most 128 characters."""


def length_problem(name: str, value: str) -> str | None:
    """Why ``value`` is too long for the text parameter ``name`` (:func:`max_chars_of`), or None. The CLI checks
    its options by the API parameter each one is, so that ``--db`` and ``--url`` refuse the same values."""
    most = max_chars_of(name)
    return f"is longer than {most} characters" if len(value) > most else None


def metric_name_problem(value: str) -> str | None:
    """Why ``value`` is no custom metric's name (:data:`METRIC_NAME_PATTERN`), or None."""
    if re.fullmatch(METRIC_NAME_PATTERN, value) is None:
        return f"{value[:64]!r} is not a metric name (letters, digits and '_')"
    return None


MAX_LABEL_FILTERS: Final = 20
"""Different label names one query may filter on (each is one more condition on every row read)."""


def label_filters(raws: Iterable[str]) -> dict[str, str] | None:
    """The label filters ``NAME=VALUE`` (``?label=``, ``--label``), repeats once; None when one name is given two
    values (no row has both). ValueError naming the problem: a filter that is not one, or more than
    :data:`MAX_LABEL_FILTERS` names."""
    labels: dict[str, str] = {}
    conflict = False
    for raw in raws:
        match = LABEL_FILTER.fullmatch(raw)
        if match is None:
            raise ValueError(label_problem(raw))
        name, value = match.groups()
        conflict = conflict or labels.get(name, value) != value
        labels.setdefault(name, value)
        if len(labels) > MAX_LABEL_FILTERS:
            raise ValueError(f"give at most {MAX_LABEL_FILTERS} different label names")
    return None if conflict else labels


def label_problem(value: str) -> str | None:
    """Why ``value`` is no label filter (:data:`LABEL_FILTER`), or None."""
    if LABEL_FILTER.fullmatch(value) is None:
        return (
            f"{value[:64]!r} must be NAME=VALUE, such as provider=openai "
            "(a label name of letters, digits and '_', a value of at most 128 characters)"
        )
    return None


def id_text_problem(text: str) -> str | None:
    """Why ``text`` is no value an id, name or filter can be, or None: a NUL character (which PostgreSQL cannot
    compare) or a lone surrogate (which is not Unicode: a JSON body spells it ``\\ud800``, and a command line's
    argument that is not valid UTF-8 arrives holding some). A query string can carry neither (a NUL is refused
    before any route, and a byte that is not UTF-8 is read as U+FFFD); a JSON body and the CLI's options can.
    """
    if "\x00" in text:
        return "holds a NUL character, which no id or name can"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"holds a lone surrogate (character {exc.start + 1}), which is not Unicode text: it must be valid UTF-8"
    return None


def rfc3339_time(text: str) -> str:
    """An RFC 3339 date-time (``2026-01-31T08:00:00Z``, ``2026-01-31t09:00:00.5+01:00``) normalised to UTC with
    microseconds (a longer fraction is cut to them).

    ValueError for any other text: the other forms ISO 8601 (and ``datetime.fromisoformat``) reads, such as
    ``20260131T080000Z``, ``2026-01-31 08:00:00Z``, a comma before the fraction or a time without an offset, and
    a date-time that names no instant (month 13, 24:00, a leap second) or one outside the years 1 to 9999 in UTC.
    """
    if _RFC3339.fullmatch(text) is None:
        raise ValueError(f"{text[:MAX_PARAM_CHARS]!r} is not an RFC 3339 date-time, like {RFC3339_EXAMPLE}")
    return normalize_ts(text)


def rfc3339_before(text: str) -> str:
    """:func:`rfc3339_time` for an exclusive upper bound (purge ``before``): a fraction past microseconds is
    rounded up, not cut, so a run started at ``.256338`` is before ``.2563381``."""
    normal = rfc3339_time(text)
    fraction = _FRACTION.search(text)
    if fraction is None or not fraction.group(1)[6:].strip("0"):
        return normal
    try:
        return format_datetime(datetime.fromisoformat(normal[:-1]) + timedelta(microseconds=1))
    except OverflowError:  # past 9999-12-31T23:59:59.999999: no stored time is later
        return normal


_FRACTION: Final = re.compile(r"\.([0-9]+)")


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

    def expect(self, names: Iterable[str], *, shown: Iterable[str] | None = None) -> None:
        """Refuse every parameter not in ``names``, naming them all and what the route takes (``shown``, when the
        names given hold patterns such as ``attr.KEY=VALUE``, else ``names``)."""
        allowed = set(names)
        unknown = sorted({key for key in self._params if key not in allowed})
        if unknown:
            listed = ", ".join(repr(name[:MAX_PARAM_CHARS]) for name in unknown[:MAX_UNKNOWN_LISTED])
            more = f" and {len(unknown) - MAX_UNKNOWN_LISTED} more" if len(unknown) > MAX_UNKNOWN_LISTED else ""
            which = "parameter" if len(unknown) == 1 else "parameters"
            raise QueryParamError(
                f"unknown query {which} {listed}{more}; this route takes "
                f"{', '.join(sorted(allowed if shown is None else set(shown))) or 'none'}"
            )

    def _values(self, name: str, max_chars: int | None = None) -> list[str]:
        self._read.add(name)
        max_chars = max_chars_of(name) if max_chars is None else max_chars
        values = [raw for raw in self._params.getlist(name) if not (raw == "" and self._blank_is_absent)]
        for raw in values:
            if len(raw) > max_chars:
                raise QueryParamError(f"query parameter {name} is longer than {max_chars} characters")
        return values

    def text(self, name: str, *, max_chars: int | None = None) -> str | None:
        """The parameter's value, or None when it is not given; a 400 when it is given more than once or is
        longer than ``max_chars`` (by default :func:`max_chars_of` the name)."""
        values = self._values(name, max_chars)
        if len(values) > 1:
            raise QueryParamError(f"query parameter {name} is given {len(values)} times; give it once")
        return values[0] if values else None

    def choices(self, name: str, kind: type[_E]) -> tuple[_E, ...]:
        """The members of the enum ``kind`` the parameter gives, each once, in the order first given.

        The parameter may repeat (``?status=failed&status=aborted``); empty when it is not given.
        """
        out: list[_E] = []
        for raw in self._values(name):
            member = _member(name, raw, kind)
            if member not in out:
                out.append(member)
        return tuple(out)

    def texts(self, name: str) -> list[str]:
        """Every value of a parameter that may repeat (``?checkpoint=a&checkpoint=b``), in order."""
        self._read.add(name)
        values = self._params.getlist(name)
        for raw in values:
            if problem := length_problem(name, raw):
                raise QueryParamError(f"query parameter {name} {problem}")
        return values

    def choice(self, name: str, kind: type[_E]) -> _E | None:
        """The member of the enum ``kind`` whose value the parameter gives, or None when it is not given."""
        raw = self.text(name)
        return None if raw is None else _member(name, raw, kind)

    def integer(self, name: str, *, default: int, low: int, high: int) -> int:
        """A whole number from ``low`` to ``high``; ``default`` when it is not given."""
        raw = self.text(name)
        if raw is None:
            return default
        digits = raw[1:] if raw[:1] == "-" else raw
        if not (digits.isascii() and digits.isdigit()):  # int() also takes "+5", " 5", "5_000" and other scripts
            raise QueryParamError(f"query parameter {name}={raw!r} is not a whole number")
        value = int(raw)
        if not low <= value <= high:
            raise QueryParamError(f"query parameter {name}={value} must be between {low} and {high}")
        return value

    def time(self, name: str, *, before: bool = False) -> str | None:
        """An RFC 3339 date-time (:func:`rfc3339_time`), normalised to UTC with microseconds; None when it is not
        given. ``before``: an exclusive upper bound (every ``until``), a fraction past microseconds rounded up
        (:func:`rfc3339_before`)."""
        raw = self.text(name)
        if raw is None:
            return None
        try:
            return rfc3339_before(raw) if before else rfc3339_time(raw)
        except ValueError:
            raise QueryParamError(
                f"query parameter {name}={raw!r} is not an RFC 3339 date-time: YYYY-MM-DDTHH:MM:SS, an optional "
                f"fraction, and Z or an offset +HH:MM, like {RFC3339_EXAMPLE}"
            ) from None


def _member(name: str, raw: str, kind: type[_E]) -> _E:
    try:
        return kind(raw)
    except ValueError:
        allowed = ", ".join(str(member.value) for member in kind)
        raise QueryParamError(f"query parameter {name}={raw!r} is not one of {allowed}") from None


def refuse_params(request: Request, names: Iterable[str] = ()) -> str | None:
    """Why a route that takes only ``names`` (none by default) refuses the request's query parameters, or None."""
    try:
        QueryParams(request).expect(names)
    except QueryParamError as exc:
        return str(exc)
    return None
