"""Per-event validation: the published JSON Schema plus the receiver's own limits.

The schema is compiled once with jsonschema_rs (a JSON Schema validator
written in Rust, about four times faster here than generated Python), one
validator per event kind (the kind's ``data`` definition inlined, so a
``node_finished`` is not also tried against the four other kinds). On top of the schema the receiver
checks what a schema cannot say cheaply: the event's encoded size, its
nesting depth, text that is not valid Unicode, timestamps that name no real
instant (or one that leaves the years 1 to 9999 once made UTC), a finish
time (``started_at`` plus ``duration_ms``) past the year 9999, and the
project an API key allows. The schema itself bounds every number to what
SQLite stores: integers to 64 bits, other numbers to 2**53.

A valid event becomes a :class:`PreparedEvent` that carries its canonical
encoding; an invalid one becomes a :class:`Rejection` whose message names the
field. The ingest route and the CLI's ``import`` both validate through here.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cache
from typing import Any, Final

import jsonschema_rs

from flowledger._wire import EventKind, event_schema
from flowledger.receiver._blobs import BLOB_PREFIXES, take_blobs
from flowledger.receiver._config import IngestLimits
from flowledger.receiver.store._canonical import canonical, canonical_utf8
from flowledger.receiver.store._event import PreparedEvent
from flowledger.receiver.store._fold import completed_at
from flowledger.receiver.store._time import normalize_ts

__all__ = ["Rejection", "prepare_event"]

_LONG_DURATION_MS: Final = 1e12
"""Durations up to about 31 years skip the finish-time check (no timestamp the schema allows overflows then)."""
_FULL_CAPTURE_KEYS: Final = {kind: {f"{p}_full" for p in prefixes} for kind, prefixes in BLOB_PREFIXES.items()}
"""Per event kind, the keys of payloads captured in full (see ``_blobs``)."""
_KINDS: Final = {kind.value: kind for kind in EventKind}
"""Event kinds by wire name (a dict lookup is cheaper than calling the Enum)."""
_MESSAGE_CHARS: Final = 240
"""Longest schema message kept whole; a longer one (it quotes the bad value) keeps its two ends."""
_MESSAGE_END_CHARS: Final = 100


@dataclass(frozen=True, slots=True)
class Rejection:
    """One event that was not stored, with a reason naming the field."""

    index: int
    error: str

    def as_json(self) -> dict[str, Any]:
        """The ``{index, error}`` entry of an ingest answer."""
        return {"index": self.index, "error": self.error}


def _merge_nullable(node: Any, defs: dict[str, Any]) -> Any:
    """Rewrite ``anyOf: [A, {"type": "null"}]`` as A with ``"null"`` added to its types.

    The two say the same thing (A's other keywords only constrain values of
    A's type), but the merged form is cheaper to check and its error names
    what is wrong (a pattern, a type) instead of "not valid under any of the
    schemas listed in anyOf".
    """
    if isinstance(node, list):
        return [_merge_nullable(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _merge_nullable(value, defs) for key, value in node.items()}
    branches = node.get("anyOf")
    if isinstance(branches, list) and len(branches) == 2 and {"type": "null"} in branches and len(node) == 1:
        other = branches[0] if branches[1] == {"type": "null"} else branches[1]
        if "$ref" in other and len(other) == 1:
            other = defs[other["$ref"].rsplit("/", 1)[-1]]
        kind = other.get("type")
        if isinstance(kind, str) and "anyOf" not in other:
            return {**other, "type": [kind, "null"]}
    return node


@cache
def _validators() -> tuple[jsonschema_rs.Validator, dict[str, jsonschema_rs.Validator]]:
    schema = copy.deepcopy(event_schema())
    schema = _merge_nullable(schema, schema["$defs"])
    by_kind: dict[str, jsonschema_rs.Validator] = {}
    for kind in EventKind:
        one = copy.deepcopy(schema)
        one.pop("allOf", None)
        one["properties"]["kind"] = {"const": kind.value}
        one["properties"]["data"] = {"$ref": f"#/$defs/{kind.value}"}
        by_kind[kind.value] = jsonschema_rs.validator_for(one)
    return jsonschema_rs.validator_for(schema), by_kind


def _schema_message(validator: jsonschema_rs.Validator, event: Any) -> str:
    """The first schema error of an invalid event, as ``event.data.status: <what is wrong>``."""
    error = next(iter(validator.iter_errors(event)), None)
    if error is None:  # pragma: no cover - only called when is_valid() said no
        return "event does not match the published schema"
    place = "event" + "".join(f"[{part}]" if type(part) is int else f".{part}" for part in error.instance_path)
    message = error.message
    if len(message) > _MESSAGE_CHARS:
        message = f"{message[:_MESSAGE_END_CHARS]} ... {message[-_MESSAGE_END_CHARS:]}"
    return f"{place}: {message}"


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of ``value`` (a scalar is 0), stopping once past ``limit``."""
    if isinstance(value, dict):
        children: Any = value.values()
    elif isinstance(value, list):
        children = value
    else:
        return 0
    deepest = 0
    for child in children:
        if isinstance(child, dict | list):
            d = _depth(child, limit)
            if d > deepest:
                deepest = d
                if deepest > limit:
                    break
    return deepest + 1


def _find_bad_text(value: Any, path: str) -> str | None:
    """Path of the first string (or key) that is not valid Unicode, or None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path
        return None
    if isinstance(value, dict):
        for key, child in value.items():
            found = _find_bad_text(key, f"{path} (a key)") or _find_bad_text(child, f"{path}.{key}")
            if found:
                return found
    elif isinstance(value, list):
        for i, child in enumerate(value):
            found = _find_bad_text(child, f"{path}[{i}]")
            if found:
                return found
    return None


def _surrogate(index: int, raw: Any) -> Rejection:
    where = _find_bad_text(raw, "event") or "event"
    return Rejection(index, f"{where} contains a lone surrogate: text must be valid Unicode")


def _largest_field(event: dict[str, Any]) -> str:
    data = event.get("data")
    if isinstance(data, dict) and data:
        key = max(data, key=lambda k: len(canonical(data[k])))
        return f"event.data.{key}"
    return "event"


def _whole(number: int | float) -> int:
    """An integer field as an ``int``: the schema's integers include a float with no fraction (``1e16``, ``-0.0``),
    which the ledger keeps as an integer column, so the hashed entry holds the integer too."""
    return number if type(number) is int else int(number)


def prepare_event(
    raw: Any, index: int, limits: IngestLimits, key_project: str | None, *, plain_floats: bool = False
) -> PreparedEvent | Rejection:
    """Validate one event of a batch; ``key_project`` is the project of the request's API key, if any.

    ``plain_floats``: the decoder found only floats that orjson writes as json does (see ``canonical_utf8``).
    """
    if type(raw) is not dict:
        return Rejection(index, f"event must be a JSON object, not {type(raw).__name__}")
    full, by_kind = _validators()
    kind: Any = raw.get("kind")  # a str of the enum once the schema passed it
    validate = by_kind.get(kind, full) if type(kind) is str else full
    try:
        if not validate.is_valid(raw):
            return Rejection(index, _schema_message(validate, raw))
    except UnicodeEncodeError:  # the validator reads strings as UTF-8: a lone surrogate cannot be
        return _surrogate(index, raw)
    project = raw.get("project")
    if key_project is not None:
        if project is None:
            raw["project"] = project = key_project
        elif project != key_project:
            return Rejection(index, f"event.project {project!r} is not the project of this API key")
    data: dict[str, Any] = raw["data"]
    try:
        ts = normalize_ts(raw["ts"])
    except ValueError:  # also one such as 0001-01-01T00:00:00+01:00, before the year 1 in UTC
        return Rejection(index, "event.ts is not a real date and time between the years 1 and 9999 in UTC")
    # Only the finish events define started_at and duration_ms; other kinds may carry them as free data.
    finish = kind == "run_finished" or kind == "node_finished"
    started_at = data.get("started_at") if finish else None
    if started_at is not None:
        try:
            started_at = normalize_ts(started_at)
        except ValueError:
            return Rejection(
                index, "event.data.started_at is not a real date and time between the years 1 and 9999 in UTC"
            )
    duration_ms = data.get("duration_ms") if finish else None
    if duration_ms is not None and duration_ms > _LONG_DURATION_MS:
        try:
            completed_at(started_at or ts, duration_ms)
        except OverflowError:
            return Rejection(index, "event.data.duration_ms: the run or node would finish after the year 9999")
    blobs: tuple[tuple[str, str], ...] = ()
    full_keys = _FULL_CAPTURE_KEYS.get(kind)  # take_blobs only when such a key is there: it is seldom
    if full_keys is not None and not full_keys.isdisjoint(data):
        blobs, blob_error = take_blobs(kind, data)
        if blob_error is not None:
            return Rejection(index, blob_error)
    try:
        body_bytes = canonical_utf8(raw, plain_floats=plain_floats)
    except UnicodeEncodeError:
        return _surrogate(index, raw)
    except ValueError:  # a number such as 1e400 parses to infinity, which JSON cannot write back
        return Rejection(index, "event holds a number too large for a JSON number (such as 1e400)")
    if len(body_bytes) > limits.max_event_bytes:
        return Rejection(
            index,
            f"event is {len(body_bytes)} bytes, over the limit of {limits.max_event_bytes}; "
            f"its largest field is {_largest_field(raw)}",
        )
    # Cheap exact pre-filter: nesting cannot be deeper than the number of opening brackets.
    if body_bytes.count(b"{") + body_bytes.count(b"[") > limits.max_depth:
        depth = _depth(raw, limits.max_depth)
        if depth > limits.max_depth:
            limit = limits.max_depth
            return Rejection(index, f"event nests objects and arrays {depth} deep, over the limit of {limit}")
    # Positional: this runs once per event, and keyword arguments cost a dict per call.
    return PreparedEvent(
        index,
        raw["event_id"],
        raw["run_id"],
        _KINDS[raw["kind"]],
        ts,
        started_at,
        project,
        raw["producer_id"],
        _whole(raw["producer_seq"]),
        data,
        body_bytes.decode("utf-8"),
        body_bytes,
        0,
        blobs,
        plain_floats,
    )
