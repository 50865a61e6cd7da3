"""The typed model of a validated workflow definition.

Validation turns a parsed :class:`~flowledger.codegen._load.Document` into a
:class:`Definition`; the renderer only ever reads this model. Every string in
it is either a validated identifier (:class:`Identifier`) or a free value
that reaches generated code only as a literal.

The parts a generated module passes to the runtime as they are (retry
policy, map settings, limits, on_error, http methods) are the runtime's own
specs from :mod:`flowledger.workflow`, and the trigger type is the wire
format's, so their fields and defaults are declared once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, TypeAlias

from flowledger._wire import CaptureMode, TriggerType
from flowledger.workflow import HttpMethod, Limits, Map, OnError, Retry

__all__ = [
    "FORMAT_VERSION",
    "CallTarget",
    "Definition",
    "EnvRef",
    "HttpMethod",
    "HttpSpec",
    "Identifier",
    "JsonValue",
    "Limits",
    "Map",
    "NodeDefinition",
    "OnError",
    "Retry",
    "Trigger",
    "TriggerType",
    "WithValue",
    "WorkflowInfo",
]

FORMAT_VERSION: Final = 1
"""The definition format version this flowledger reads (`flowledger: 1`)."""


class Identifier(str):
    """A string the validator checked against an identifier pattern."""

    __slots__ = ()


JsonValue: TypeAlias = "bool | int | float | str | list[JsonValue] | dict[str, JsonValue] | None"


@dataclass(frozen=True, slots=True)
class EnvRef:
    """``{env: NAME}``: the value of an environment variable, read when the node runs."""

    name: Identifier


WithValue: TypeAlias = "JsonValue | EnvRef"


@dataclass(frozen=True, slots=True)
class CallTarget:
    """``module.path:function``, both parts validated identifiers."""

    module: Identifier
    function: Identifier

    def __str__(self) -> str:
        return f"{self.module}:{self.function}"


@dataclass(frozen=True, slots=True)
class HttpSpec:
    """An http node's request."""

    method: HttpMethod
    url: str
    headers: tuple[tuple[str, str | EnvRef], ...]


@dataclass(frozen=True, slots=True)
class NodeDefinition:
    """One node, as declared at ``line`` under ``nodes[index]``."""

    id: Identifier
    index: int
    line: int
    call: CallTarget | None
    http: HttpSpec | None
    needs: tuple[Identifier, ...]
    with_args: tuple[tuple[Identifier, WithValue], ...]
    retry: Retry | None
    timeout_s: float | None
    when: CallTarget | None
    map: Map | None
    effect: bool
    on_error: OnError
    capture: CaptureMode | None = None


@dataclass(frozen=True, slots=True)
class WorkflowInfo:
    """The ``workflow:`` section."""

    id: str
    """Validated against ``[a-z0-9][a-z0-9_-]*`` (not a Python identifier: it may hold ``-``)."""
    name: str | None
    version: str | None
    capture: CaptureMode | None = None


@dataclass(frozen=True, slots=True)
class Trigger:
    """The ``trigger:`` section."""

    kind: TriggerType
    http_path: str | None = None
    every_s: float | None = None
    cron: str | None = None
    """A five-field cron expression, evaluated in UTC."""


@dataclass(frozen=True, slots=True)
class Definition:
    """A whole validated definition."""

    source_file: str
    sha256: str
    workflow: WorkflowInfo
    trigger: Trigger
    limits: Limits
    output: Identifier
    nodes: tuple[NodeDefinition, ...]
