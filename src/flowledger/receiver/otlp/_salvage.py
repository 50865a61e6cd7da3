"""Reading what can be read of an export request its decoder refuses as a whole.

The protobuf decoder stops at the first item it cannot read (a string that
is not UTF-8, nesting past its depth limit, a truncated field), and the
protobuf JSON mapping at the first value of the wrong type or id that is
not hex: either way the whole request would be refused, its good spans,
log records and data points with it. :func:`decode_export` decodes the
request as :func:`~._decode.decode_request` does and, when that fails, again
one part at a time down the request's levels (resource, scope, item): a
part that cannot be read is left empty in its place, so the indexes of
everything after it stay the request's own, and it is named in the
partial-success answer with the items it held. A request with no readable
item at all is refused as before, with the decoder's own message.

The protobuf parts are found with the wire format's framing alone
(:mod:`._framing`). A request the decoder refused only for its depth as a
whole, each of whose parts reads on its own, is refused as before: the parts
are decoded each with the decoder's whole depth budget, and nothing in it
was unreadable to name.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass

from flowledger._exceptions import OtlpBodyError
from flowledger.receiver._body import no_json_constants
from flowledger.receiver.otlp._decode import OtlpFormat, OtlpSignal, decode_request, ids_to_base64
from flowledger.receiver.otlp._framing import fields

__all__ = ["ITEM_NOUNS", "LEVELS", "Decoded", "Unreadable", "decode_export", "leaves"]

LEVELS: Final[dict[OtlpSignal, tuple[tuple[str, int], ...]]] = {
    OtlpSignal.TRACES: (("resourceSpans", 1), ("scopeSpans", 2), ("spans", 2)),
    OtlpSignal.LOGS: (("resourceLogs", 1), ("scopeLogs", 2), ("logRecords", 2)),
    OtlpSignal.METRICS: (("resourceMetrics", 1), ("scopeMetrics", 2), ("metrics", 2)),
}
"""Each signal's levels from the request down to its items: (JSON name, field number) of the repeated field."""
ITEM_NOUNS: Final = {
    OtlpSignal.TRACES: "span(s)",
    OtlpSignal.LOGS: "log record(s)",
    OtlpSignal.METRICS: "data point(s)",
}
"""What a partial success counts, for each signal: the items its ``rejected_*`` field counts."""
_MAX_PROBLEM_CHARS: Final = 300
"""A decoder's reason is cut to this many characters (it may quote the value it could not read)."""
_METRIC_DATA: Final = {5: "gauge", 7: "sum", 9: "histogram", 10: "exponentialHistogram", 11: "summary"}
"""A Metric's data fields (number: JSON name); each holds its points in field 1, ``dataPoints``."""
_UNREADABLE: Final = (DecodeError, RecursionError, ValueError, TypeError, json_format.ParseError, OtlpBodyError)


@dataclass(slots=True)
class Unreadable:
    """The parts of a request that could not be read: left empty in their places, named here."""

    rejected: int = 0
    """The items (spans, log records, data points) those parts held."""
    problems: list[str] = field(default_factory=list)
    """``path: problem`` for each part, in the request's order."""
    items: set[str] = field(default_factory=set)
    """The paths of the items among them (``resourceSpans[0].scopeSpans[1].spans[2]``): their empty stand-ins are
    not items of the request, and validation skips them."""


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded export request and what of it could not be read."""

    signal: OtlpSignal
    message: Any
    unreadable: Unreadable

    def readable(self) -> Any:
        """The request without the empty stand-ins of unreadable items (what is forwarded upstream)."""
        if not self.unreadable.items:
            return self.message
        copy = type(self.message)()
        copy.CopyFrom(self.message)
        _drop_items(copy, LEVELS[self.signal], "", self.unreadable.items)
        return copy


def decode_export(signal: OtlpSignal, body: bytes, fmt: OtlpFormat) -> Decoded:
    """Decode an export request, part by part where it cannot be read whole; OtlpBodyError (400) when no item
    of it can be read (with the whole decoder's message)."""
    try:
        return Decoded(signal, decode_request(signal, body, fmt), Unreadable())
    except OtlpBodyError as refused:
        failure = refused
    salvage = _Salvage(signal)
    try:
        if fmt is OtlpFormat.PROTOBUF:
            message = salvage.protobuf(signal.request_type, body, LEVELS[signal], "")
        else:
            document = json.loads(body.decode("utf-8"), parse_constant=no_json_constants)
            message = salvage.json(signal.request_type, document, LEVELS[signal], "")
    except (*_UNREADABLE, UnicodeDecodeError):  # not even the request's framing: nothing of it can be read
        raise failure from None
    if not salvage.out.problems or leaves(message, LEVELS[signal]) <= len(salvage.out.items):
        raise failure  # nothing unreadable to name (the depth of the whole), or nothing readable to keep
    return Decoded(signal, message, salvage.out)


class _Salvage:
    """One request's reading part by part, into :attr:`out`."""

    def __init__(self, signal: OtlpSignal) -> None:
        self.signal = signal
        self.out = Unreadable()

    def protobuf(self, cls: type[Message], data: bytes, levels: tuple[tuple[str, int], ...], where: str) -> Any:
        """``cls`` from ``data``, its parts at ``levels[0]`` read one by one; raises when the rest of it cannot be."""
        (name, number), deeper = levels[0], levels[1:]
        parts = fields(data)
        message = cls()
        message.MergeFromString(b"".join(whole for n, whole, _ in parts if n != number))
        child_cls, children = self._children(message, number)
        index = 0
        for n, _whole, payload in parts:
            if n != number:
                continue
            place = f"{where}.{name}[{index}]" if where else f"{name}[{index}]"
            index += 1
            below = partial(self.protobuf, child_cls, payload, deeper, place) if deeper else None
            units = partial(self._units_pb, payload, deeper)
            children.append(self._part(child_cls, place, partial(child_cls.FromString, payload), below, units))
        return message

    def json(self, cls: type[Message], node: Any, levels: tuple[tuple[str, int], ...], where: str) -> Any:
        """:meth:`protobuf` for a JSON document: ``cls`` from the object ``node``, its parts one by one."""
        if not isinstance(node, dict):
            raise json_format.ParseError(f"{where or 'the body'} is not a JSON object")
        (name, number), deeper = levels[0], levels[1:]
        message = cls()
        child_cls, children = self._children(message, number)
        spellings = _spellings(name)
        rest = {key: value for key, value in node.items() if key not in spellings}
        json_format.ParseDict(ids_to_base64(rest, where), message, ignore_unknown_fields=True)
        for index, item in enumerate(_named_list(node, name)):
            place = f"{where}.{name}[{index}]" if where else f"{name}[{index}]"
            below = partial(self.json, child_cls, item, deeper, place) if deeper else None
            units = partial(self._units_json, item, deeper)
            children.append(self._part(child_cls, place, partial(_from_dict, child_cls, item, place), below, units))
        return message

    def _part(
        self,
        cls: type[Message],
        place: str,
        whole: Callable[[], Message],
        below: Callable[[], Message] | None,
        units: Callable[[], int],
    ) -> Message:
        """One part at ``place``: read ``whole``, or else part by part (``below``, for a part with levels under
        it), or else an empty ``cls`` standing in its place, named and counted (``units``) as unreadable."""
        try:
            return whole()
        except _UNREADABLE as exc:
            problem: BaseException = exc
        if below is not None:
            try:
                return below()
            except _UNREADABLE as exc:
                problem = exc
        self._lost(place, problem, units(), item=below is None)
        return cls()

    @staticmethod
    def _children(message: Message, number: int) -> tuple[type[Message], Any]:
        descriptor = message.DESCRIPTOR.fields_by_number[number]
        return GetMessageClass(descriptor.message_type), getattr(message, descriptor.name)

    def _lost(self, place: str, problem: BaseException, units: int, *, item: bool) -> None:
        text = problem.message if isinstance(problem, OtlpBodyError) else str(problem) or type(problem).__name__
        if text.startswith(place + "."):  # a JSON id's message names its own path: the rest of it, below the part
            text = text[len(place) + 1 :]
        if len(text) > _MAX_PROBLEM_CHARS:
            text = text[: _MAX_PROBLEM_CHARS - 3] + "..."
        self.out.rejected += units
        if item and self.signal is not OtlpSignal.METRICS:
            self.out.problems.append(f"{place}: cannot be decoded: {text}")
        else:
            self.out.problems.append(f"{place}: cannot be decoded (its {units} {ITEM_NOUNS[self.signal]}): {text}")
        if item:
            self.out.items.add(place)

    def _units_pb(self, data: bytes, deeper: tuple[tuple[str, int], ...]) -> int:
        """The items (data points, for metrics) in an unreadable part, counted by the framing (1 when even that
        fails: the part was at least one)."""
        try:
            if deeper:
                number, below = deeper[0][1], deeper[1:]
                return sum(self._units_pb(payload, below) for n, _, payload in fields(data) if n == number)
            if self.signal is not OtlpSignal.METRICS:
                return 1
            data_fields = [payload for n, _, payload in fields(data) if n in _METRIC_DATA]
            return sum(1 for payload in data_fields for n, _, _ in fields(payload) if n == 1)
        except _UNREADABLE:
            return 1

    def _units_json(self, node: Any, deeper: tuple[tuple[str, int], ...]) -> int:
        """:meth:`_units_pb` for a JSON part (either spelling of a field's name, as the JSON mapping reads)."""
        try:
            if not isinstance(node, dict):
                return 1
            if deeper:
                name, below = deeper[0][0], deeper[1:]
                return sum(self._units_json(item, below) for item in _named_list(node, name))
            if self.signal is not OtlpSignal.METRICS:
                return 1
            data = [node.get(spelt) for name in _METRIC_DATA.values() for spelt in _spellings(name)]
            return sum(len(_named_list(one, "dataPoints")) for one in data if isinstance(one, dict))
        except _UNREADABLE:
            return 1


def _from_dict(cls: type[Message], node: Any, place: str) -> Message:
    """``cls`` from the JSON value ``node`` at ``place`` (its hex ids read as the OTLP JSON encoding writes them)."""
    message = cls()
    json_format.ParseDict(ids_to_base64(node, place), message, ignore_unknown_fields=True)
    return message


def _spellings(name: str) -> tuple[str, ...]:
    """A field's JSON name and its proto name (``dataPoints``, ``data_points``): the JSON mapping reads both."""
    proto = "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
    return (name, proto) if proto != name else (name,)


def _named_list(node: dict[str, Any], name: str) -> list[Any]:
    """The items of the list field ``name`` of a JSON object, under either spelling."""
    return [item for spelt in _spellings(name) for item in _list(node.get(spelt))]


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise json_format.ParseError(f"a list was expected, not {type(value).__name__}")
    return value


def leaves(message: Any, levels: tuple[tuple[str, int], ...]) -> int:
    """How many items the request (or part) holds at the bottom of ``levels``."""
    number, deeper = levels[0][1], levels[1:]
    children = getattr(message, message.DESCRIPTOR.fields_by_number[number].name)
    return len(children) if not deeper else sum(leaves(child, deeper) for child in children)


def _drop_items(message: Any, levels: tuple[tuple[str, int], ...], where: str, paths: set[str]) -> None:
    """Remove the items at ``paths`` from ``message`` (a part at ``where``), in place."""
    (name, number), deeper = levels[0], levels[1:]
    children = getattr(message, message.DESCRIPTOR.fields_by_number[number].name)
    for index in reversed(range(len(children))):
        place = f"{where}.{name}[{index}]" if where else f"{name}[{index}]"
        if deeper:
            _drop_items(children[index], deeper, place, paths)
        elif place in paths:
            del children[index]
