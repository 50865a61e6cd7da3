"""What a generated workflow module declares: the specs of a workflow and its nodes.

A generated module builds one :class:`Workflow` of :class:`Node` specs and
hands it to :func:`~flowledger.workflow.execute`. The defaults below are
the only place they are declared: the codegen model, the validator and the
generated code use these constants, and a test checks that the definition
JSON Schema states the same defaults.
"""

from __future__ import annotations

import enum
import importlib
import math
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from flowledger._exceptions import ConfigError
from flowledger._wire import CaptureMode, TriggerType
from flowledger.instrument import Location

__all__ = [
    "DEFAULT_ATTEMPTS",
    "DEFAULT_BACKOFF_FACTOR",
    "DEFAULT_BACKOFF_S",
    "DEFAULT_EFFECT",
    "DEFAULT_HTTP_METHOD",
    "DEFAULT_MAP_CONCURRENCY",
    "DEFAULT_MAX_BACKOFF_S",
    "DEFAULT_ON_ERROR",
    "NO_RETRY",
    "Call",
    "Env",
    "Http",
    "HttpMethod",
    "HttpTrigger",
    "Limits",
    "Manual",
    "Map",
    "Node",
    "OnError",
    "Phase",
    "Retry",
    "Schedule",
    "Workflow",
]


class OnError(enum.StrEnum):
    """What a node's final failure does to the run."""

    FAIL = "fail"
    CONTINUE = "continue"


class Phase(enum.StrEnum):
    """What part of a node an attempt record covers (attribute ``flowledger.phase``)."""

    CALL = "call"
    WHEN = "when"
    MAP = "map"


class HttpMethod(enum.StrEnum):
    """Methods an http node may use."""

    GET = "GET"
    POST = "POST"
    PUT = "PUT"
    PATCH = "PATCH"
    DELETE = "DELETE"


# --- defaults: declared here once ---------------------------------------------

DEFAULT_ATTEMPTS: Final = 1
"""Attempts of a node without ``retry`` (a definition's ``retry`` must state ``attempts``)."""
DEFAULT_BACKOFF_S: Final = 0.0
"""Seconds to wait after the first failed attempt."""
DEFAULT_BACKOFF_FACTOR: Final = 2.0
"""Each further wait is this many times the one before."""
DEFAULT_MAX_BACKOFF_S: Final = 30.0
"""No wait between attempts is longer than this."""
DEFAULT_MAP_CONCURRENCY: Final = 8
"""Items of a mapped node attempted at once."""
DEFAULT_HTTP_METHOD: Final = HttpMethod.POST
DEFAULT_ON_ERROR: Final = OnError.FAIL
DEFAULT_EFFECT: Final = False


@dataclass(frozen=True, slots=True)
class Env:
    """A keyword argument or header whose value is read from the environment when the node runs.

    The value is passed to the node but never recorded.
    """

    name: str

    def read(self, node_id: str, where: str) -> str:
        """The variable's value; ConfigError naming it and its use when it is unset."""
        try:
            return os.environ[self.name]
        except KeyError:
            raise ConfigError(
                f"environment variable {self.name} is not set; node `{node_id}` reads it for {where}"
            ) from None


@dataclass(frozen=True, slots=True)
class Call:
    """A function by import path, imported the first time a run needs it."""

    module: str
    function: str

    def __str__(self) -> str:
        return f"{self.module}:{self.function}"

    def resolve(self) -> Callable[..., Any]:
        """Import and return the function (cached per process by the import system)."""
        module = sys.modules.get(self.module)  # imported already: skip the import machinery's locks
        if module is None or getattr(module.__spec__, "_initializing", False):  # or still being imported elsewhere
            module = importlib.import_module(self.module)  # waits for that import to finish
        try:
            fn = getattr(module, self.function)
        except AttributeError:
            raise AttributeError(f"module {self.module!r} has no function {self.function!r} (from `{self}`)") from None
        if not callable(fn):
            raise TypeError(f"`{self}` is a {type(fn).__name__}, not a function")
        return fn  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class Http:
    """An http node: sends its input as JSON and returns the JSON reply."""

    url: str
    method: str = DEFAULT_HTTP_METHOD
    headers: Mapping[str, str | Env] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Retry:
    """Attempts and exponential backoff between them."""

    attempts: int = DEFAULT_ATTEMPTS
    backoff_s: float = DEFAULT_BACKOFF_S
    factor: float = DEFAULT_BACKOFF_FACTOR
    max_backoff_s: float = DEFAULT_MAX_BACKOFF_S

    def delay_s(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based): ``backoff_s * factor ** (attempt - 1)``,
        at most ``max_backoff_s``; never raises.

        Computed in floats: a growth past a float's range (a large ``factor`` or many attempts) is past any
        ``max_backoff_s``, so the wait is the cap, where the power itself would raise ``OverflowError``.
        """
        base = _float(self.backoff_s)
        cap = _float(self.max_backoff_s)
        if base == 0:
            return min(cap, 0.0)
        try:
            grown = base * _float(self.factor) ** max(attempt - 1, 0)
        except OverflowError:  # the power passed a float's range: so did the wait
            grown = math.copysign(math.inf, base)
        return min(cap, grown)


NO_RETRY: Final = Retry()


def _float(number: float) -> float:
    """``number`` as a float; an integer past a float's range as an infinity of its sign."""
    try:
        return float(number)
    except OverflowError:
        return math.inf if number > 0 else -math.inf


@dataclass(frozen=True, slots=True)
class Map:
    """Run the node once per item of its list input, at most ``max_concurrency`` at a time."""

    max_concurrency: int = DEFAULT_MAP_CONCURRENCY


@dataclass(frozen=True, slots=True)
class Node:
    """One node of a workflow: a ``call`` or an ``http`` request, and how to run it."""

    id: str
    call: Call | None = None
    http: Http | None = None
    needs: tuple[str, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    retry: Retry = NO_RETRY
    timeout_s: float | None = None
    when: Call | None = None
    map: Map | None = None
    effect: bool = DEFAULT_EFFECT
    on_error: OnError = DEFAULT_ON_ERROR
    capture: CaptureMode | None = None
    """``FULL``: record the complete output too (None: as the workflow says)."""
    line: int = 0
    """Line of the definition file that declares the node (0: unknown)."""

    def __post_init__(self) -> None:
        if (self.call is None) == (self.http is None):
            raise ConfigError(f"node `{self.id}` needs exactly one of call= or http=")


@dataclass(frozen=True, slots=True)
class Manual:
    """Runs start from the command line or from ``run(payload)``."""


@dataclass(frozen=True, slots=True)
class HttpTrigger:
    """``POST path`` on the module's ASGI ``app`` starts a run."""

    path: str


@dataclass(frozen=True, slots=True)
class Schedule:
    """``python module.py --serve`` starts a run every ``every_s`` seconds, or at each ``cron`` time (UTC)."""

    every_s: float | None = None
    cron: str | None = None

    def __post_init__(self) -> None:
        if (self.every_s is None) == (self.cron is None):
            raise ConfigError("a schedule needs exactly one of every_s= or cron=")


@dataclass(frozen=True, slots=True)
class Limits:
    """The run is aborted past ``deadline_s`` or once its cost passes ``budget_usd``; ``None``: no limit."""

    deadline_s: float | None = None
    budget_usd: float | None = None


@dataclass(frozen=True, slots=True)
class Workflow:
    """A whole workflow, as a generated module declares it."""

    id: str
    nodes: tuple[Node, ...]
    output: str
    name: str | None = None
    version: str | None = None
    trigger: Manual | HttpTrigger | Schedule = field(default_factory=Manual)
    limits: Limits = field(default_factory=Limits)
    definition_file: str = ""
    definition_sha256: str | None = None
    capture: CaptureMode | None = None
    """``FULL``: record every node's complete output and the trigger data (what a resume reuses)."""

    sample_rate: float | None = None
    """The share of runs kept by sampling (failed, aborted and slow runs always are); None: the SDK's setting."""
    project: str | None = None
    """The run context every run of the workflow carries (``flowledger.run(project=, agent_id=, intent=)``)."""
    agent_id: str | None = None
    intent: str | None = None
    locations: Mapping[str, Location] = field(init=False, repr=False, compare=False)
    attempt_attributes: dict[tuple[str, Phase], Mapping[str, Any]] = field(init=False, repr=False, compare=False)
    """The fixed attributes of a node's attempt records, by node id and phase: the runtime derives them once
    per process (the node's hash among them), not once per attempt. Read-only for everyone else."""

    def __post_init__(self) -> None:
        ids = [n.id for n in self.nodes]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"workflow `{self.id}` declares a node id twice")
        missing = sorted({need for n in self.nodes for need in n.needs} - set(ids))
        if missing or self.output not in ids:
            raise ConfigError(f"workflow `{self.id}` refers to unknown nodes: {missing or [self.output]}")
        locations = {
            n.id: Location(self.definition_file, n.line, f"nodes[{index}]") for index, n in enumerate(self.nodes)
        }
        object.__setattr__(self, "locations", locations)
        object.__setattr__(self, "attempt_attributes", {})

    @property
    def trigger_type(self) -> TriggerType:
        """The wire-format trigger type of a run this workflow's own trigger starts."""
        if isinstance(self.trigger, HttpTrigger):
            return TriggerType.HTTP
        if isinstance(self.trigger, Schedule):
            return TriggerType.SCHEDULE
        return TriggerType.MANUAL
