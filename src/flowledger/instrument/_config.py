"""Settings of the SDK: defaults, ``FLOWLEDGER_*`` variables, ``configure()``.

A bad environment value is reported once (a warning naming the variable and
what it accepts) and replaced by the default: configuration must never stop
a workflow from running. ``configure()`` called in code with a bad value
raises ConfigError, because there the caller can fix it at once. Secrets
(the API key, OTLP headers) are never echoed: not in a warning, an error
message or the settings' ``repr``.
"""

from __future__ import annotations

import enum
import logging
import math
import os
import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final, TypeVar

from flowledger._apikey import api_key_problem, header_problem
from flowledger._exceptions import ConfigError
from flowledger._run_context import CONTEXT_MAX_CHARS, context_problem, project_problem
from flowledger._url import join_path, masked, url_problem
from flowledger._wire import LogLevel
from flowledger.instrument._otel_env import (
    DEFAULT_TRACES_SAMPLER,
    SERVICE_NAME_KEY,
    TracesSampler,
    UnsupportedSampler,
    parse_resource_attributes,
    parse_sdk_disabled,
    parse_traces_sampler,
    parse_traces_sampler_ratio,
    resource_attributes_problem,
    resource_pairs,
    sampler_accepts,
)
from flowledger.instrument._sampling import parse_sample_rates

__all__ = [
    "DEFAULT_ENDPOINT",
    "DEFAULT_SINKS",
    "DURATIONS",
    "FsyncPolicy",
    "Seconds",
    "Settings",
    "SinkKind",
    "SinkSpec",
    "parse_sinks",
    "settings_from_env",
    "url_problem",
]

_log = logging.getLogger("flowledger")

DEFAULT_ENDPOINT: Final = "http://127.0.0.1:4318"
EVENTS_PATH: Final = "/v1/events"
TRACES_PATH: Final = "/v1/traces"
DEFAULT_CAPTURE_LIMIT_BYTES: Final = 4096
DEFAULT_REDACT_PATTERNS: Final = (
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
)
DEFAULT_QUEUE_MAX_ITEMS: Final = 10_000
DEFAULT_QUEUE_MAX_BYTES: Final = 32 * 1024 * 1024
DEFAULT_BATCH_MAX_ITEMS: Final = 512
DEFAULT_BATCH_MAX_BYTES: Final = 1024 * 1024
DEFAULT_BATCH_MAX_AGE_S: Final = 0.2
DEFAULT_REQUEST_TIMEOUT_S: Final = 2.0
DEFAULT_EXIT_FLUSH_S: Final = 0.3
DEFAULT_SPOOL_MAX_BYTES: Final = 256 * 1024 * 1024
DEFAULT_HEARTBEAT_INTERVAL_S: Final = 15.0
DEFAULT_NODE_START_DELAY_S: Final = 0.2
DEFAULT_MAX_RETRIES: Final = 5
DEFAULT_SERVICE_NAME: Final = "flowledger"
DEFAULT_JSONL_MAX_BYTES: Final = 1024 * 1024 * 1024
DEFAULT_LOG_LEVEL: Final = LogLevel.INFO
DEFAULT_LOG_MAX_LINES: Final = 1000
DEFAULT_LOG_MAX_BYTES: Final = 256 * 1024
DEFAULT_SAMPLE_SLOW_S: Final = 10.0
HOUR_S: Final = 3600.0
DAY_S: Final = 86_400.0
YEAR_S: Final = 365 * DAY_S


@dataclass(frozen=True, slots=True)
class Seconds:
    """The range a duration setting accepts, in seconds: finite, from ``low`` (or above it) to ``high``."""

    low: float
    high: float
    low_open: bool = False

    def holds(self, value: float) -> bool:
        if not math.isfinite(value) or value > self.high:
            return False
        return value > self.low if self.low_open else value >= self.low

    def advice(self) -> str:
        """What the setting accepts, as a warning or an error says it."""
        span = "more than" if self.low_open else "from"
        joint = "and at most" if self.low_open else "to"
        return f"a number of seconds {span} {_shown(self.low)} {joint} {_shown(self.high)}"


def _shown(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


DURATIONS: Final[Mapping[str, Seconds]] = {
    "batch_max_age_s": Seconds(0, HOUR_S, low_open=True),
    "request_timeout_s": Seconds(0, HOUR_S, low_open=True),
    "exit_flush_s": Seconds(0, HOUR_S),
    "heartbeat_interval_s": Seconds(0, DAY_S, low_open=True),
    "node_start_delay_s": Seconds(0, DAY_S),
    "sample_slow_s": Seconds(0, YEAR_S, low_open=True),
}
"""The range of every duration setting: waits and timeouts up to an hour, intervals up to a day, a year for
``sample_slow_s`` (only compared with a run's length). Every value in range fits the thread and socket
timeouts of every platform, and the receiver takes it (a heartbeat interval is sent in ``run_started``)."""


class SinkKind(enum.StrEnum):
    """Where events go: the names ``FLOWLEDGER_SINKS`` and ``configure(sinks=...)`` take."""

    RECEIVER = "receiver"
    """The receiver's ``/v1/events`` (and its spans to ``/v1/traces`` or the OTLP endpoint)."""
    OTLP = "otlp"
    """Only OTLP spans, to the OTLP traces endpoint: no receiver needed."""
    JSONL = "jsonl"
    """One JSON event per line appended to a local file (``jsonl:PATH``), for ``flowledger import``."""
    MEMORY = "memory"
    """A bounded list in the process, read with ``flowledger.testing.memory_sink()``."""


class FsyncPolicy(enum.StrEnum):
    """When the JSONL sink forces its writes to disk."""

    BATCH = "batch"
    """After each batch appended (every ``batch_max_age_s`` at most): a crash loses no acknowledged batch."""
    NEVER = "never"
    """Leave it to the operating system: faster, and a power cut may lose the last seconds."""


@dataclass(frozen=True, slots=True)
class SinkSpec:
    """One entry of the sinks setting: a kind, and the file of a JSONL sink."""

    kind: SinkKind
    path: Path | None = None

    def __str__(self) -> str:
        return f"{self.kind}:{self.path}" if self.path is not None else str(self.kind)


def as_path(value: object, what: str) -> Path:
    """``value`` (a non-blank ``str`` or ``os.PathLike`` of one) as a ``Path``; raises ValueError saying ``what``
    it must be."""
    if isinstance(value, Path):
        return value
    text = os.fspath(value) if isinstance(value, str | os.PathLike) else None
    if not isinstance(text, str) or not text.strip():  # Path("") would be the working directory
        raise ValueError(f"{what} must be a path (a non-empty str or a pathlib.Path), not {value!r}")
    return Path(text)


_PATH_SETTINGS: Final = {"spool_dir": False, "idempotency_dir": True}
"""Settings holding a directory path, and whether each may be None."""


DEFAULT_SINKS: Final = (SinkSpec(SinkKind.RECEIVER),)
_SINK_HELP: Final = "receiver, otlp, jsonl:PATH or memory"


def parse_sinks(value: str | SinkSpec | Any) -> tuple[SinkSpec, ...]:
    """Parse ``"receiver,jsonl:/var/log/runs.jsonl"`` (or a sequence of entries) into sink specs.

    Raises ValueError naming the first entry that is not a sink; an empty
    list, or one sink named twice, is an error too.
    """
    if isinstance(value, str):
        entries: list[Any] = [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, SinkSpec):
        entries = [value]
    else:
        try:
            entries = list(value)
        except TypeError:
            raise ValueError(f"sinks must be a comma-separated string or a list of {_SINK_HELP}") from None
    out: list[SinkSpec] = []
    for entry in entries:
        if isinstance(entry, SinkSpec):
            spec = entry if entry.path is None else SinkSpec(entry.kind, as_path(entry.path, "a jsonl sink's file"))
        elif not isinstance(entry, str) or not entry.strip():
            raise ValueError(f"sinks entry {entry!r} is not a sink: use {_SINK_HELP}")
        else:
            name, sep, rest = entry.strip().partition(":")
            try:
                kind = SinkKind(name.strip().lower())
            except ValueError:
                raise ValueError(f"sinks entry {entry!r} is not a sink: use {_SINK_HELP}") from None
            if kind is SinkKind.JSONL:
                if not sep or not rest.strip():
                    raise ValueError(f"sinks entry {entry!r} needs a file: write it jsonl:PATH")
                spec = SinkSpec(kind, Path(rest.strip()).expanduser())
            elif sep:
                raise ValueError(f"sinks entry {entry!r}: only jsonl takes a value (jsonl:PATH)")
            else:
                spec = SinkSpec(kind)
        if spec.kind is SinkKind.JSONL and spec.path is None:
            raise ValueError("a jsonl sink needs a file: write it jsonl:PATH")
        if spec in out:
            raise ValueError(f"sinks entry {str(spec)!r} is named twice")
        out.append(spec)
    if not out:
        raise ValueError(f"sinks must name at least one of {_SINK_HELP}")
    return tuple(out)


def _default_spool_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "flowledger" / "spool"


_URL_SETTINGS: Final = frozenset({"endpoint", "otlp_traces_endpoint"})
"""Settings that are URLs, which may carry credentials: masked in ``repr``."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Settings:
    """Every SDK setting. Build one with :func:`settings_from_env` or ``configure()``."""

    endpoint: str = DEFAULT_ENDPOINT
    """Receiver base URL; events go to ``{endpoint}/v1/events``."""
    disabled: bool = False
    """When true, hooks run the user's code and record nothing."""
    service_name: str = DEFAULT_SERVICE_NAME
    project: str | None = None
    """Project the events belong to; the receiver binds API keys to projects."""
    user_id: str | None = None
    """Default ``user_id`` of runs (who a run is for)."""
    agent_id: str | None = None
    """Default ``agent_id`` of runs (which agent or service runs them)."""
    api_key: str | None = field(default=None, repr=False)
    """Bearer token sent to the receiver, if it requires one: printable ASCII, no spaces or control characters."""
    spool_dir: Path = field(default_factory=_default_spool_dir)
    spool_max_bytes: int = DEFAULT_SPOOL_MAX_BYTES
    capture: bool = True
    """Whether node input and output are recorded at all."""
    capture_limit_bytes: int = DEFAULT_CAPTURE_LIMIT_BYTES
    redact_patterns: tuple[str, ...] = DEFAULT_REDACT_PATTERNS
    """Case-insensitive substrings: a mapping key containing one is redacted (``-`` counts as ``_``)."""
    queue_max_items: int = DEFAULT_QUEUE_MAX_ITEMS
    queue_max_bytes: int = DEFAULT_QUEUE_MAX_BYTES
    batch_max_items: int = DEFAULT_BATCH_MAX_ITEMS
    batch_max_bytes: int = DEFAULT_BATCH_MAX_BYTES
    batch_max_age_s: float = DEFAULT_BATCH_MAX_AGE_S
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    max_retries: int = DEFAULT_MAX_RETRIES
    exit_flush_s: float = DEFAULT_EXIT_FLUSH_S
    """How long a process exit may be held to send what is queued; the rest is spooled."""
    heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S
    node_start_delay_s: float = DEFAULT_NODE_START_DELAY_S
    """``node_started`` is sent once an attempt has run this long; 0 sends it for every attempt."""
    export_spans: bool = True
    """Whether the SDK exports its own spans (to the receiver or an OTLP endpoint)."""
    otel_app_provider: bool = True
    """Whether runs and nodes become real spans of a TracerProvider the application installed globally.

    False keeps the SDK's own way whatever the application installed: span
    contexts on the hot path, spans built and exported by the sender. That
    avoids the cost of a provider whose span processors are expensive (see
    docs/otel.md); the application's own spans still nest under the nodes.
    """
    otlp_traces_endpoint: str | None = None
    """Full OTLP/HTTP traces URL; from OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT. None: the receiver."""
    otlp_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    resource_attributes: tuple[tuple[str, str], ...] = ()
    """More attributes of the exported spans' resource, from ``OTEL_RESOURCE_ATTRIBUTES`` (or a mapping in
    ``configure()``). ``service.name`` is always ``service_name``, ``telemetry.sdk.*`` always the SDK's."""
    traces_sampler: TracesSampler = DEFAULT_TRACES_SAMPLER
    """Which traces' spans the SDK exports, from ``OTEL_TRACES_SAMPLER`` (see ``_otel_env.trace_kept``)."""
    traces_sampler_ratio: float = 1.0
    """The share of traces a ratio sampler exports, from ``OTEL_TRACES_SAMPLER_ARG`` (0 to 1)."""
    idempotency_guard: bool = False
    """Opt-in: skip an effect whose identical idempotency key already succeeded here."""
    idempotency_dir: Path | None = None
    """Where the local idempotency guard keeps its records (default: next to the spool)."""
    sinks: tuple[SinkSpec, ...] = DEFAULT_SINKS
    """Where events go; ``configure(sinks="receiver,jsonl:runs.jsonl")`` or a list of entries."""
    jsonl_max_bytes: int = DEFAULT_JSONL_MAX_BYTES
    """A JSONL sink's file never grows past this; what does not fit waits in the spool."""
    jsonl_fsync: FsyncPolicy = FsyncPolicy.BATCH
    capture_logs: bool = True
    """Whether records emitted through Python ``logging`` while a node runs are recorded for its attempt."""
    log_level: LogLevel = DEFAULT_LOG_LEVEL
    """The lowest level of a captured log record (a logger's own level still filters first)."""
    log_max_lines: int = DEFAULT_LOG_MAX_LINES
    """Distinct log lines kept per attempt; past it lines are counted as dropped."""
    log_max_bytes: int = DEFAULT_LOG_MAX_BYTES
    """Bytes of log text (messages and exceptions, UTF-8) kept per attempt; past it lines are counted as dropped."""
    sample_rate: float = 1.0
    """The share of runs kept (0 to 1); failed, aborted and slow runs are always kept."""
    sample_rate_by_workflow: tuple[tuple[str, float], ...] = ()
    """Rates of particular workflows (``FLOWLEDGER_SAMPLE_RATE=orders=0.05,0.5``), over ``sample_rate``."""
    sample_slow_s: float = DEFAULT_SAMPLE_SLOW_S
    """A run that takes at least this long is slow: kept whatever its rate."""

    def __repr__(self) -> str:
        """The settings as the dataclass shows them, the endpoints masked (:func:`masked`): a logged ``Settings``
        shows no password or token, as ``api_key`` and ``otlp_headers`` are left out already."""
        shown = []
        for f in fields(self):
            if f.repr:
                value = getattr(self, f.name)
                shown.append(f"{f.name}={masked(value) if f.name in _URL_SETTINGS and value else value!r}")
        return f"Settings({', '.join(shown)})"

    @property
    def events_url(self) -> str:
        """Where events are posted: ``/v1/events`` below the endpoint's path, its query kept after it."""
        return join_path(self.endpoint, EVENTS_PATH)

    @property
    def traces_url(self) -> str:
        return self.otlp_traces_endpoint or join_path(self.endpoint, TRACES_PATH)

    @property
    def redact_regex(self) -> re.Pattern[str] | None:
        return _redact_regex(self.redact_patterns)

    def updated(self, **changes: Any) -> Settings:
        """Return a copy with ``changes`` applied, validating each one."""
        known = {f.name for f in fields(Settings)}
        for name in changes:
            if name not in known:
                raise ConfigError(
                    f"flowledger.configure() has no setting {name!r}; known settings: {', '.join(sorted(known))}."
                )
        for name, optional in _PATH_SETTINGS.items():
            if name in changes and not (optional and changes[name] is None):
                try:
                    changes[name] = as_path(changes[name], name)
                except ValueError as exc:
                    raise ConfigError(f"flowledger.configure(): {exc}.") from None
        if "sinks" in changes:
            try:
                changes["sinks"] = parse_sinks(changes["sinks"])
            except ValueError as exc:
                raise ConfigError(f"flowledger.configure(): {exc}.") from None
        if "jsonl_fsync" in changes:
            try:
                changes["jsonl_fsync"] = FsyncPolicy(changes["jsonl_fsync"])
            except ValueError:
                raise ConfigError(
                    f"flowledger.configure(): jsonl_fsync {changes['jsonl_fsync']!r} must be one of "
                    f"{', '.join(p.value for p in FsyncPolicy)}."
                ) from None
        if isinstance(changes.get("sample_rate"), str):  # "orders=0.05,0.5", as the variable takes it
            try:
                default, per_workflow = parse_sample_rates(changes["sample_rate"])
            except ValueError as exc:
                raise ConfigError(f"flowledger.configure(): sample_rate: {exc}.") from None
            changes["sample_rate"] = self.sample_rate if default is None else default
            changes["sample_rate_by_workflow"] = tuple(per_workflow.items())
        if isinstance(changes.get("sample_rate_by_workflow"), Mapping):
            changes["sample_rate_by_workflow"] = tuple(changes["sample_rate_by_workflow"].items())
        if "redact_patterns" in changes:
            changes["redact_patterns"] = _patterns_given(changes["redact_patterns"])
        if "otlp_headers" in changes:
            changes["otlp_headers"] = _headers_given(changes["otlp_headers"])
        if "resource_attributes" in changes:
            try:
                changes["resource_attributes"] = resource_pairs(changes["resource_attributes"])
            except ValueError as exc:
                raise ConfigError(f"flowledger.configure(): resource_attributes: {exc}.") from None
        if "traces_sampler" in changes:
            try:
                changes["traces_sampler"] = parse_traces_sampler(changes["traces_sampler"])
            except (ValueError, AttributeError):
                raise ConfigError(
                    f"flowledger.configure(): traces_sampler {changes['traces_sampler']!r} must be {sampler_accepts()}."
                ) from None
        if "log_level" in changes:
            try:
                changes["log_level"] = _parse_log_level(changes["log_level"])
            except (ValueError, AttributeError):
                raise ConfigError(
                    f"flowledger.configure(): log_level {changes['log_level']!r} must be one of "
                    f"{', '.join(level.value for level in LogLevel)}."
                ) from None
        new = replace(self, **changes)
        problems = new.problems()
        if problems:
            raise ConfigError("; ".join(problems))
        return new

    def problems(self) -> list[str]:
        """Describe every value that cannot be used (empty when all are fine)."""
        out: list[str] = []
        for name in _FLAGS:
            value = getattr(self, name)
            if not isinstance(value, bool):  # "false" and "no" are true in Python: never guess
                out.append(f"{name} must be True or False, not {value!r}")
        for name in _URL_SETTINGS:
            url = getattr(self, name)
            problem = None if url is None and name != "endpoint" else url_problem(url)
            if problem is not None:
                out.append(f"{name} {masked(str(url))!r} must be {problem}")
        for name in (
            "capture_limit_bytes",
            "queue_max_items",
            "queue_max_bytes",
            "batch_max_items",
            "batch_max_bytes",
            "spool_max_bytes",
            "jsonl_max_bytes",
            "log_max_lines",
            "log_max_bytes",
        ):
            value = getattr(self, name)
            if not _is_int(value) or value <= 0:
                out.append(f"{name} must be a positive integer, not {value!r}")
        for name, optional in _PATH_SETTINGS.items():  # Settings(...) built directly is not converted as configure() is
            value = getattr(self, name)
            if not isinstance(value, Path) and not (optional and value is None):
                out.append(f"{name} must be a pathlib.Path, not {value!r}")
        if not _is_rate(self.sample_rate):
            out.append(f"sample_rate must be a number from 0 to 1, not {self.sample_rate!r}")
        out.extend(_rates_problems(self.sample_rate_by_workflow))
        if not _is_rate(self.traces_sampler_ratio):
            out.append(f"traces_sampler_ratio must be a number from 0 to 1, not {self.traces_sampler_ratio!r}")
        sampler: object = self.traces_sampler  # Settings(...) built directly is not converted as configure() does
        if not isinstance(sampler, TracesSampler):
            out.append(f"traces_sampler must be {sampler_accepts()}, not {sampler!r}")
        resource_problem = resource_attributes_problem(self.resource_attributes)
        if resource_problem is not None:
            out.append(resource_problem)
        for name, allowed in DURATIONS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not allowed.holds(value):
                out.append(f"{name} must be {allowed.advice()}, not {value!r}")
        if not _is_int(self.max_retries) or self.max_retries < 0:
            out.append(f"max_retries must be an integer, zero or more, not {self.max_retries!r}")
        for problem in (
            context_problem("service_name", self.service_name),  # what run_started's service_name takes
            _patterns_problem(self.redact_patterns),
            _headers_problem(self.otlp_headers, "otlp_headers"),
            None if self.project is None else project_problem("project", self.project),
            None if self.user_id is None else context_problem("user_id", self.user_id),
            None if self.agent_id is None else context_problem("agent_id", self.agent_id),
        ):
            if problem is not None:
                out.append(problem)
        if self.api_key is not None:
            problem = api_key_problem(self.api_key, origin="api_key")
            if problem is not None:
                out.append(problem)
        return out


_FLAGS: Final = tuple(f.name for f in fields(Settings) if f.type == "bool")
"""The on/off settings (every field declared ``bool``): True or False, nothing that merely looks like one."""


def _is_int(value: object) -> bool:
    """An integer, and not a bool (``True`` is no count of anything)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_rate(value: object) -> bool:
    """A number (not a bool) from 0 to 1."""
    return isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= value <= 1.0


def _rates_problems(rates: object) -> list[str]:
    """What is wrong with ``sample_rate_by_workflow`` (pairs of a workflow id and its rate)."""
    advice = "sample_rate_by_workflow must be a mapping of workflow ids to numbers from 0 to 1"
    if isinstance(rates, str | bytes) or not isinstance(rates, tuple | list):
        return [f"{advice}, not {rates!r}"]
    out: list[str] = []
    for pair in rates:
        if not (isinstance(pair, tuple | list) and len(pair) == 2 and isinstance(pair[0], str)):
            return [f"{advice}, not {rates!r}"]
        workflow_id, rate = pair
        if not _is_rate(rate):
            out.append(f"sample_rate_by_workflow[{workflow_id!r}] must be a number from 0 to 1, not {rate!r}")
    return out


_PATTERNS_ADVICE: Final = "key fragments: a list of non-empty strings, or one string of them separated by commas"


def _patterns_given(value: object) -> object:
    """``redact_patterns`` as ``configure()`` takes it: a comma-separated str (as the variable), or a list, tuple or
    set of fragments. A str naming no fragment is refused: ``()`` turns redaction off, never a blank by mistake.
    Anything else is kept for :func:`_patterns_problem` to report."""
    if isinstance(value, str):
        patterns = _parse_patterns(value)
        if not patterns:
            raise ConfigError(
                f"flowledger.configure(): redact_patterns {value!r} names no key fragment; give {_PATTERNS_ADVICE} "
                "(an empty tuple records every key in clear)."
            )
        return patterns
    return tuple(value) if isinstance(value, list | tuple | set | frozenset) else value


def _patterns_problem(patterns: object) -> str | None:
    """What is wrong with ``redact_patterns`` (None when it is a tuple of non-blank strings)."""
    if isinstance(patterns, tuple) and all(isinstance(p, str) and p.strip() for p in patterns):
        return None
    return f"redact_patterns must be {_PATTERNS_ADVICE}, not {patterns!r}"


def decoded_header(name: str, value: str) -> tuple[str, str]:
    """A header of ``otlp_headers`` as it is sent: name and value percent-decoded, as the OTel specification says of
    ``OTEL_EXPORTER_OTLP_HEADERS`` (``Authorization=Basic%20abc`` sends ``Authorization: Basic abc``)."""
    return urllib.parse.unquote(name), urllib.parse.unquote(value)


def _headers_given(value: object) -> object:
    """``otlp_headers`` as ``configure()`` takes it: a mapping, or (name, value) pairs; anything else is kept for
    :func:`_headers_problem` to report."""
    pairs: Iterable[object]
    if isinstance(value, Mapping):
        pairs = value.items()
    elif isinstance(value, list | tuple):
        pairs = value
    else:
        return value
    out = []
    for pair in pairs:
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            return value
        out.append((pair[0], pair[1]))
    return tuple(out)


def _headers_problem(headers: object, origin: str) -> str | None:
    """Why ``headers`` cannot all be sent (naming ``origin`` and a header's name, never a value); None when they can.

    Checked as sent (percent-decoded), so that no export fails later with an error that quotes the value."""
    if not isinstance(headers, tuple) or not all(isinstance(pair, tuple) and len(pair) == 2 for pair in headers):
        return f"{origin} must be a mapping of header names to values, or (name, value) pairs"
    for name, value in headers:
        if isinstance(name, str) and isinstance(value, str):
            name, value = decoded_header(name, value)
        problem = header_problem(name, value, origin=origin)
        if problem is not None:
            return problem
    return None


_REGEX_CACHE: dict[tuple[str, ...], re.Pattern[str] | None] = {}
REDACT_FRAGMENTS: dict[re.Pattern[str], tuple[str, ...]] = {}
"""The lowercased fragments each redaction regex alternates: ``in`` finds them faster than the regex."""


def _redact_regex(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    try:
        return _REGEX_CACHE[patterns]
    except KeyError:
        # matched against lowercased text: far faster than re.IGNORECASE with alternation
        fragments = tuple(dict.fromkeys(p.lower().replace("-", "_") for p in patterns))
        rx = re.compile("|".join(re.escape(f) for f in fragments)) if patterns else None
        if rx is not None:
            REDACT_FRAGMENTS[rx] = fragments
        _REGEX_CACHE[patterns] = rx
        return rx


# --- environment ---------------------------------------------------------

T = TypeVar("T")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_reported: set[str] = set()
_SECRET_VARIABLES: Final = frozenset(
    {"FLOWLEDGER_API_KEY", "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"}
)
"""Variables whose value a warning must not show."""
_URL_VARIABLES: Final = frozenset(
    {"FLOWLEDGER_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"}
)
"""Variables holding a URL, which may carry a password or a token: a warning shows it masked."""


def _report_once(var: str, value: str, accepts: str, default: str = "the default") -> None:
    if var in _reported:
        return
    _reported.add(var)
    if var in _SECRET_VARIABLES:
        _log.warning("flowledger: ignoring %s (value not shown): it must be %s; using %s.", var, accepts, default)
        return
    shown = masked(value) if var in _URL_VARIABLES else value
    _log.warning("flowledger: ignoring %s=%r: it must be %s; using %s.", var, shown, accepts, default)


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(text)


def _parse_dir(text: str) -> Path:
    if not text.strip():  # Path("") is the working directory: spool files would land wherever the process runs
        raise ValueError(text)
    return Path(text)


def _parse_count(text: str) -> int:
    """An integer, zero or more, written as one: ``2.7`` or ``1e30`` are refused, as ``configure()`` refuses them."""
    value = int(text.strip())
    if value < 0:
        raise ValueError(text)
    return value


def _parse_pos_int(text: str) -> int:
    value = int(text.strip())
    if value <= 0:
        raise ValueError(text)
    return value


def _parse_url(text: str) -> str:
    value = text.strip()
    if url_problem(value) is not None:
        raise ValueError(text)
    return value


def _seconds(allowed: Seconds) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = float(text.strip())
        if not allowed.holds(value):
            raise ValueError(text)
        return value

    return parse


def _parse_api_key(text: str) -> str:
    if api_key_problem(text, origin="FLOWLEDGER_API_KEY") is not None:
        raise ValueError("the API key is not usable")  # never the key itself
    return text


def _parse_log_level(text: str | LogLevel) -> LogLevel:
    if isinstance(text, LogLevel):
        return text
    return LogLevel(text.strip().lower())


def _checked(check: Callable[[str, object], str | None]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if check("value", text) is not None:
            raise ValueError(text)
        return text

    return parse


def _parse_patterns(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def _parse_env_patterns(text: str) -> tuple[str, ...]:
    """``FLOWLEDGER_REDACT_PATTERNS``: a blank value (``""``, ``" , "``) is refused, not read as "redact nothing": a
    variable left empty by a deployment template must not record every password in clear."""
    patterns = _parse_patterns(text)
    if not patterns:
        raise ValueError(text)
    return patterns


def _parse_headers(text: str) -> tuple[tuple[str, str], ...]:
    """``name=value,...`` of an OTLP headers variable; ValueError saying what is wrong, naming at most a header's
    name (the value holds a secret, as may a part without ``=``)."""
    out: list[tuple[str, str]] = []
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError("an entry has no name=")
        pair = (key.strip(), value.strip())
        problem = header_problem(*decoded_header(*pair), origin="the variable")
        if problem is not None:
            raise ValueError(problem)
        out.append(pair)
    return tuple(out)


def _duration(name: str) -> tuple[str, Callable[[str], Any], str]:
    return name, _seconds(DURATIONS[name]), DURATIONS[name].advice()


_SERVICE_NAME_ACCEPTS: Final = f"a name of 1 to {CONTEXT_MAX_CHARS} characters"
"""What a service name variable takes: what ``run_started``'s ``service_name`` takes (``context_problem``)."""


_ENV: Final[dict[str, tuple[str, Callable[[str], Any], str]]] = {
    "FLOWLEDGER_ENDPOINT": ("endpoint", _parse_url, "an http:// or https:// URL"),
    "FLOWLEDGER_DISABLED": ("disabled", _parse_bool, "1 or 0"),
    "FLOWLEDGER_SERVICE_NAME": ("service_name", _checked(context_problem), _SERVICE_NAME_ACCEPTS),
    "FLOWLEDGER_PROJECT": (
        "project",
        _checked(project_problem),
        "a project name (1 to 128 of A-Z a-z 0-9 _ . -, starting with a letter or digit)",
    ),
    "FLOWLEDGER_USER_ID": ("user_id", _checked(context_problem), "1 to 256 characters"),
    "FLOWLEDGER_AGENT_ID": ("agent_id", _checked(context_problem), "1 to 256 characters"),
    "FLOWLEDGER_API_KEY": ("api_key", _parse_api_key, "a key of printable ASCII without spaces or control characters"),
    "FLOWLEDGER_SPOOL_DIR": ("spool_dir", _parse_dir, "a directory path"),
    "FLOWLEDGER_SPOOL_MAX_BYTES": ("spool_max_bytes", _parse_pos_int, "a positive integer"),
    "FLOWLEDGER_CAPTURE": ("capture", _parse_bool, "1 or 0"),
    "FLOWLEDGER_CAPTURE_LIMIT_BYTES": ("capture_limit_bytes", _parse_pos_int, "a positive integer"),
    "FLOWLEDGER_REDACT_PATTERNS": ("redact_patterns", _parse_env_patterns, "comma-separated key fragments"),
    "FLOWLEDGER_QUEUE_MAX_ITEMS": ("queue_max_items", _parse_pos_int, "a positive integer"),
    "FLOWLEDGER_QUEUE_MAX_BYTES": ("queue_max_bytes", _parse_pos_int, "a positive integer"),
    "FLOWLEDGER_BATCH_MAX_ITEMS": ("batch_max_items", _parse_pos_int, "a positive integer"),
    "FLOWLEDGER_BATCH_MAX_BYTES": ("batch_max_bytes", _parse_pos_int, "a positive integer"),
    "FLOWLEDGER_BATCH_MAX_AGE_S": _duration("batch_max_age_s"),
    "FLOWLEDGER_REQUEST_TIMEOUT_S": _duration("request_timeout_s"),
    "FLOWLEDGER_MAX_RETRIES": ("max_retries", _parse_count, "an integer, zero or more"),
    "FLOWLEDGER_EXIT_FLUSH_S": _duration("exit_flush_s"),
    "FLOWLEDGER_HEARTBEAT_INTERVAL_S": _duration("heartbeat_interval_s"),
    "FLOWLEDGER_NODE_START_DELAY_S": _duration("node_start_delay_s"),
    "FLOWLEDGER_EXPORT_SPANS": ("export_spans", _parse_bool, "1 or 0"),
    "FLOWLEDGER_OTEL_APP_PROVIDER": ("otel_app_provider", _parse_bool, "1 or 0"),
    "FLOWLEDGER_IDEMPOTENCY_GUARD": ("idempotency_guard", _parse_bool, "1 or 0"),
    "FLOWLEDGER_IDEMPOTENCY_DIR": ("idempotency_dir", _parse_dir, "a directory path"),
    "FLOWLEDGER_JSONL_MAX_BYTES": ("jsonl_max_bytes", _parse_pos_int, "a positive integer"),
    "FLOWLEDGER_JSONL_FSYNC": ("jsonl_fsync", FsyncPolicy, "batch or never"),
    "FLOWLEDGER_CAPTURE_LOGS": ("capture_logs", _parse_bool, "1 or 0"),
    "FLOWLEDGER_LOG_LEVEL": ("log_level", _parse_log_level, "debug, info, warning, error or critical"),
    "FLOWLEDGER_LOG_MAX_LINES": ("log_max_lines", _parse_pos_int, "a positive integer"),
    "FLOWLEDGER_LOG_MAX_BYTES": ("log_max_bytes", _parse_pos_int, "a positive integer"),
    "FLOWLEDGER_SAMPLE_SLOW_S": _duration("sample_slow_s"),
}


_UNSET_WHEN_EMPTY: Final = frozenset({"FLOWLEDGER_SERVICE_NAME"})
"""Variables an empty value leaves unset, as OTel reads ``OTEL_SERVICE_NAME``: the next source then applies
(``OTEL_SERVICE_NAME``, else ``flowledger``), not an empty service name. So does every on/off variable
(``_parse_bool``): ``FLOWLEDGER_CAPTURE=`` (a compose file's ``${CAPTURE}`` left unset) keeps its default, never
turning a setting that is on by default off."""


_OTLP_ENDPOINT_VARIABLES: Final = (
    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", TRACES_PATH),
)
_RECEIVER_TRACES: Final = "the default (spans go to the receiver's traces endpoint)"


def _otlp_traces_endpoint(env: Mapping[str, str]) -> str | None:
    """The traces URL the OTel variables give: the traces variable as it is, else ``/v1/traces`` below the
    general one. A variable that is not a usable URL is reported under its own name, as it was given
    (masked), naming the setting used instead: the next variable when it is usable, else the default."""
    bad: list[tuple[str, str, str]] = []
    chosen: tuple[str, str] | None = None
    for var, path in _OTLP_ENDPOINT_VARIABLES:
        raw = env.get(var, "")
        if not raw.strip():
            continue
        problem = url_problem(raw.strip())
        if problem is not None:
            bad.append((var, raw, problem))
            continue
        chosen = (var, raw.strip() if path is None else join_path(raw.strip(), path))
        break
    for var, raw, problem in bad:
        _report_once(var, raw, problem, _RECEIVER_TRACES if chosen is None else chosen[0])
    return None if chosen is None else chosen[1]


_OTLP_PROTOCOLS: Final = frozenset({"grpc", "http/protobuf", "http/json"})
"""What ``OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL`` may say; anything else is sent as ``http/protobuf``."""


def _otel_sdk_variables(source: Mapping[str, str], values: dict[str, Any]) -> None:
    """Read ``OTEL_SDK_DISABLED``, ``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_TRACES_SAMPLER(_ARG)`` into ``values``;
    warn of an ``OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL`` no exporter speaks.

    ``FLOWLEDGER_EXPORT_SPANS`` (read before, into ``values``), when set, wins over ``OTEL_SDK_DISABLED``; a
    ``service.name`` in the resource attributes names the service only when neither ``FLOWLEDGER_SERVICE_NAME``
    nor ``OTEL_SERVICE_NAME`` does.
    """
    disabled = source.get("OTEL_SDK_DISABLED")
    if disabled is not None:
        try:
            off = parse_sdk_disabled(disabled)
        except ValueError:
            _report_once("OTEL_SDK_DISABLED", disabled, "true or false", "false (span export stays on)")
        else:
            if off and "export_spans" not in values:  # FLOWLEDGER_EXPORT_SPANS, when usable, wins
                values["export_spans"] = False
    resource = source.get("OTEL_RESOURCE_ATTRIBUTES")
    if resource is not None and resource.strip():
        try:
            pairs = parse_resource_attributes(resource)
        except ValueError as exc:
            _report_once(
                "OTEL_RESOURCE_ATTRIBUTES",
                resource,
                f"comma-separated key=value pairs, percent-encoded ({exc})",
                "no attributes of it",
            )
        else:
            attributes = dict(pairs)
            service = attributes.pop(SERVICE_NAME_KEY, None)
            if service and "service_name" not in values and not source.get("OTEL_SERVICE_NAME"):
                if context_problem("service_name", service) is None:
                    values["service_name"] = service
                else:
                    _report_once(
                        "OTEL_RESOURCE_ATTRIBUTES",
                        resource,
                        f"pairs whose service.name is {_SERVICE_NAME_ACCEPTS}",
                        "its other attributes, and the default service name",
                    )
            values["resource_attributes"] = tuple(attributes.items())
    sampler_text = source.get("OTEL_TRACES_SAMPLER")
    sampler = DEFAULT_TRACES_SAMPLER
    if sampler_text is not None and sampler_text.strip():
        try:
            sampler = values["traces_sampler"] = parse_traces_sampler(sampler_text)
        except UnsupportedSampler:
            _report_once(
                "OTEL_TRACES_SAMPLER",
                sampler_text,
                f"{sampler_accepts()} (flowledger does not apply remote or vendor samplers to its spans)",
                f"the default, {DEFAULT_TRACES_SAMPLER}",
            )
        except ValueError:
            _report_once(
                "OTEL_TRACES_SAMPLER", sampler_text, sampler_accepts(), f"the default, {DEFAULT_TRACES_SAMPLER}"
            )
    for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = source.get(name, "")
        if protocol.strip() and protocol.strip().lower() not in _OTLP_PROTOCOLS:
            _report_once(name, protocol, "grpc, http/protobuf or http/json", "http/protobuf")
    ratio = source.get("OTEL_TRACES_SAMPLER_ARG")
    if sampler.takes_ratio and ratio is not None and ratio.strip():
        try:
            values["traces_sampler_ratio"] = parse_traces_sampler_ratio(ratio)
        except ValueError:
            _report_once("OTEL_TRACES_SAMPLER_ARG", ratio, "a number from 0 to 1", "the default, 1.0")


def _default_text(name: str) -> str:
    """How a warning names the value used instead of a bad one: ``the default, 0.3 s`` for a duration."""
    if name in DURATIONS:
        default = next(f.default for f in fields(Settings) if f.name == name)
        return f"the default, {default:g} s"
    return "the default"


def settings_from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Build settings from ``FLOWLEDGER_*`` and the standard ``OTEL_*`` variables."""
    source = os.environ if env is None else env
    values: dict[str, Any] = {}
    for var, (name, parse, accepts) in _ENV.items():
        raw = source.get(var)
        if raw is None or (not raw.strip() and (var in _UNSET_WHEN_EMPTY or parse is _parse_bool)):
            continue
        try:
            values[name] = parse(raw)
        except (ValueError, TypeError):
            if var in _URL_VARIABLES:
                accepts = url_problem(raw.strip()) or accepts
            _report_once(var, raw, accepts, _default_text(name))
    sinks = source.get("FLOWLEDGER_SINKS")
    if sinks is not None and sinks.strip():
        try:
            values["sinks"] = parse_sinks(sinks)
        except ValueError as exc:
            if "FLOWLEDGER_SINKS" not in _reported:
                _reported.add("FLOWLEDGER_SINKS")
                _log.warning("flowledger: ignoring FLOWLEDGER_SINKS=%r: %s; using the receiver.", sinks, exc)
    rates = source.get("FLOWLEDGER_SAMPLE_RATE")
    if rates is not None and rates.strip():
        try:
            default, per_workflow = parse_sample_rates(rates)
        except ValueError:
            _report_once("FLOWLEDGER_SAMPLE_RATE", rates, "a rate from 0 to 1, or WORKFLOW=RATE pairs and a rate")
        else:
            if default is not None:
                values["sample_rate"] = default
            values["sample_rate_by_workflow"] = tuple(per_workflow.items())
    otlp = _otlp_traces_endpoint(source)
    if otlp is not None:
        values["otlp_traces_endpoint"] = otlp
    headers_var = (
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS"
        if source.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
        else "OTEL_EXPORTER_OTLP_HEADERS"
    )
    headers = source.get(headers_var)
    if headers:
        try:
            values["otlp_headers"] = _parse_headers(headers)
        except ValueError as exc:
            _report_once(
                headers_var, headers, f"comma-separated name=value pairs that can be sent ({exc})", "no headers"
            )
    service = source.get("OTEL_SERVICE_NAME")
    if "service_name" not in values and service:
        if context_problem("service_name", service) is None:
            values["service_name"] = service
        else:
            _report_once("OTEL_SERVICE_NAME", service, _SERVICE_NAME_ACCEPTS)
    _otel_sdk_variables(source, values)
    return Settings(**values)


def _forget_reports() -> None:
    """Let every bad variable be reported again (used by tests of the warning)."""
    _reported.clear()
