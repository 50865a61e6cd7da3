"""Per-event validation: the published JSON Schema plus the receiver's own limits.

The schema is compiled once with fastjsonschema, one validator per event
kind (the kind's ``data`` definition inlined, so a ``node_finished`` is not
also tried against the four other kinds). On top of the schema the receiver
checks what a schema cannot say cheaply: the event's encoded size, its
nesting depth, text that is not valid Unicode, timestamps that name no real
instant, integers too large to store, and the project an API key allows.

A valid event becomes a :class:`PreparedEvent` that carries its canonical
encoding; an invalid one becomes a :class:`Rejection` whose message names the
field.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any, Final

import fastjsonschema

from flowledger._wire import EventKind, event_schema
from flowledger.receiver._canonical import canonical
from flowledger.receiver._config import Limits

__all__ = ["PreparedEvent", "Rejection", "normalize_ts", "prepare_event"]

_MAX_INT: Final = 2**63 - 1
"""SQLite stores integers in 64 bits; the schema copy caps every integer field here."""
_TS_LEN: Final = len("2026-01-01T00:00:00.000000Z")
_DATA_FIELDS_BY_SIZE: Final = ("input", "output", "trigger_data", "attributes", "error")


@dataclass(slots=True)
class PreparedEvent:
    """A valid event, ready for the writer."""

    index: int
    """Position in its request's batch."""
    event_id: str
    run_id: str
    kind: EventKind
    ts: str
    """The event's timestamp normalised to ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    started_at: str | None
    """``data.started_at`` normalised the same way, when the event has one."""
    project: str | None
    producer_id: str
    producer_seq: int
    data: dict[str, Any]
    body: str
    """Canonical JSON text of the event (what the ledger stores)."""
    body_bytes: bytes
    """``body`` encoded as UTF-8 (what the hash chain covers)."""
    seq: int = 0
    """Ledger position, set by the store when the event is appended."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """One event that was not stored, with a reason naming the field."""

    index: int
    error: str

    def as_json(self) -> dict[str, Any]:
        """The ``{index, error}`` entry of an ingest answer."""
        return {"index": self.index, "error": self.error}


def _cap_integers(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("type") == "integer" and "maximum" not in node:
            node["maximum"] = _MAX_INT
        for value in node.values():
            _cap_integers(value)
    elif isinstance(node, list):
        for value in node:
            _cap_integers(value)


def _merge_nullable(node: Any, defs: dict[str, Any]) -> Any:
    """Rewrite ``anyOf: [A, {"type": "null"}]`` as A with ``"null"`` added to its types.

    The two say the same thing (A's other keywords only constrain values of
    A's type), but fastjsonschema checks ``anyOf`` by raising and catching an
    exception per failed branch, which made a null optional field the most
    expensive part of validating an event.
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
def _validators() -> tuple[Any, dict[str, Any]]:
    schema = copy.deepcopy(event_schema())
    _cap_integers(schema)
    schema = _merge_nullable(schema, schema["$defs"])
    by_kind: dict[str, Any] = {}
    for kind in EventKind:
        one = copy.deepcopy(schema)
        one.pop("allOf", None)
        one["properties"]["kind"] = {"const": kind.value}
        one["properties"]["data"] = {"$ref": f"#/$defs/{kind.value}"}
        by_kind[kind.value] = fastjsonschema.compile(one)
    return fastjsonschema.compile(schema), by_kind


def _schema_message(exc: fastjsonschema.JsonSchemaValueException, event: Any) -> str:
    name = str(exc.name).replace("data", "event", 1)
    if exc.rule == "required" and isinstance(exc.value, dict) and isinstance(exc.rule_definition, list):
        missing = [key for key in exc.rule_definition if key not in exc.value]
        return f"{name} is missing the required field(s) {', '.join(repr(k) for k in missing)}"
    if exc.rule == "additionalProperties" and isinstance(exc.value, dict):
        return str(exc.message).replace("data", "event", 1) + " (unknown field)"
    message = str(exc.message)
    return message.replace("data", "event", 1) if message.startswith("data") else f"{name}: {message}"


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


def _largest_field(event: dict[str, Any]) -> str:
    data = event.get("data")
    if isinstance(data, dict) and data:
        key = max(data, key=lambda k: len(canonical(data[k])))
        return f"event.data.{key}"
    return "event"


def normalize_ts(text: str) -> str:
    """Return an RFC 3339 timestamp as UTC with microseconds; ValueError when it names no instant."""
    if len(text) == _TS_LEN and text[-1] == "Z" and text[19] == ".":
        datetime.fromisoformat(text)  # still check month 13 and the like
        return text
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def prepare_event(raw: Any, index: int, limits: Limits, key_project: str | None) -> PreparedEvent | Rejection:
    """Validate one event of a batch; ``key_project`` is the project of the request's API key, if any."""
    if type(raw) is not dict:
        return Rejection(index, f"event must be a JSON object, not {type(raw).__name__}")
    full, by_kind = _validators()
    kind = raw.get("kind")
    validate = by_kind.get(kind, full) if type(kind) is str else full
    try:
        validate(raw)
    except fastjsonschema.JsonSchemaValueException as exc:
        return Rejection(index, _schema_message(exc, raw))
    project = raw.get("project")
    if key_project is not None:
        if project is None:
            raw["project"] = project = key_project
        elif project != key_project:
            return Rejection(index, f"event.project {project!r} is not the project of this API key")
    data: dict[str, Any] = raw["data"]
    try:
        ts = normalize_ts(raw["ts"])
    except ValueError:
        return Rejection(index, "event.ts is not a real date and time")
    started_at = data.get("started_at")
    if started_at is not None:
        try:
            started_at = normalize_ts(started_at)
        except ValueError:
            return Rejection(index, "event.data.started_at is not a real date and time")
    body = canonical(raw)
    try:
        body_bytes = body.encode("utf-8")
    except UnicodeEncodeError:
        where = _find_bad_text(raw, "event") or "event"
        return Rejection(index, f"{where} contains a lone surrogate: text must be valid Unicode")
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
    return PreparedEvent(
        index=index,
        event_id=raw["event_id"],
        run_id=raw["run_id"],
        kind=EventKind(raw["kind"]),
        ts=ts,
        started_at=started_at,
        project=project,
        producer_id=raw["producer_id"],
        producer_seq=raw["producer_seq"],
        data=data,
        body=body,
        body_bytes=body_bytes,
    )
