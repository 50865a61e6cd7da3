"""Receiver settings: ingest limits, write queue, sweeper, API keys, forwarding, trace links, retention, checkpoints.

Every limit is a named default with its unit in the name, and every field can
be set in code (``ReceiverConfig(...)``) or from ``FLOWLEDGER_RECEIVER_*``
environment variables by :func:`config_from_env`. The text settings
(forwarding endpoint and headers, ``FLOWLEDGER_TRACE_URL_TEMPLATE``) are
checked here too, so that a bad value stops ``flowledger serve`` at start.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Final, NamedTuple
from urllib.parse import unquote, urlsplit

from flowledger._exceptions import ConfigError
from flowledger._run_context import PROJECT_PATTERN
from flowledger._url import masked, userinfo_cut_short
from flowledger.receiver._resume_endpoints import RESUME_ENDPOINTS_ENV, parse_resume_endpoints
from flowledger.receiver._trace_url import TRACE_ID_PLACEHOLDER

__all__ = [
    "DEFAULT_DB_PATH",
    "DEFAULT_SWITCH_INTERVAL_S",
    "FORWARD_HEADER_ENCODING",
    "TRACE_URL_ENV",
    "IngestLimits",
    "ReceiverConfig",
    "RetentionPolicy",
    "check_checkpoint_url",
    "check_template",
    "config_from_env",
    "parse_allowed_hosts",
    "parse_forward_endpoint",
    "parse_forward_headers",
    "parse_retention",
    "shown_url",
    "template_from_env",
]

DEFAULT_DB_PATH: Final = Path("flowledger.db")

DEFAULT_MAX_BODY_BYTES: Final = 16 * 1024 * 1024
DEFAULT_MAX_INFLATED_BYTES: Final = 64 * 1024 * 1024
DEFAULT_MAX_BATCH_EVENTS: Final = 10_000
DEFAULT_MAX_EVENT_BYTES: Final = 1024 * 1024
DEFAULT_MAX_DEPTH: Final = 64
DEFAULT_WRITE_QUEUE_MAX_REQUESTS: Final = 256
DEFAULT_COMMIT_MAX_EVENTS: Final = 20_000
DEFAULT_SWITCH_INTERVAL_S: Final = 0.0002
"""How often a thread running Python hands the interpreter lock to one waiting for it, in ``flowledger serve``
(``FLOWLEDGER_RECEIVER_SWITCH_INTERVAL_S``; Python's own default is 0.005).

At 1 ms or less the SQLite store runs a commit group's write statements on a thread of their own while the
writer folds and hashes the next rows (``store/_on_thread.py``); that thread needs the lock back after each
statement, so the shorter the interval the more the two overlap, and the more CPU the hand-overs cost. Above
1 ms the writer runs its statements itself, as before. Measured over HTTP on two cores (``benchmarks/ingest.py
--repeat 1 --events 40000``, three alternating runs of each, medians): 28,536 events/s and 39.7 us of receiver
CPU per event at 0.2 ms, 25,560 events/s and 36.7 us at 0.005; in another run (``--repeat 5 --baseline``) the
tree before the statement thread 26,756 and 34.7, this one 29,563 and 37.2. So 0.005 is the setting for the
least CPU per event, this default the one for the most events/s.
"""
DEFAULT_STUCK_AFTER_S: Final = 300.0
DEFAULT_SWEEP_INTERVAL_S: Final = 30.0
DEFAULT_STUCK_HEARTBEATS: Final = 3
"""A run is stuck when it missed this many of its own heartbeat intervals (and the threshold passed)."""
DEFAULT_READERS: Final = 2
DEFAULT_READ_TIMEOUT_S: Final = 30.0
"""Seconds one query of the query API, the viewer or the analytics routes may run before it is stopped and answered
503 (``FLOWLEDGER_RECEIVER_READ_TIMEOUT_S``; 0: no limit). Exports, ``verify``, coverage, reconciliation, proofs
and resume evidence read as long as they need."""
DEFAULT_RETRY_AFTER_S: Final = 1
DEFAULT_FORWARD_QUEUE_MAX_REQUESTS: Final = 1000
DEFAULT_FORWARD_TIMEOUT_S: Final = 10.0
DEFAULT_MAX_BODY_BYTES_IN_FLIGHT: Final = 16 * 1024 * 1024
"""Request-body bytes (inflated) the receiver reads and parses at once; past it ingest answers 503 with Retry-After."""
DEFAULT_HEADER_TIMEOUT_S: Final = 10.0
"""Time a request has to send its complete headers before it is answered 408 and its connection closed."""
DEFAULT_MAX_CONNECTIONS: Final = 1000
"""Connections a serving process keeps open at once (lowered to fit the process's file descriptor limit)."""
DEFAULT_SHUTDOWN_S: Final = 10.0
"""Seconds a stopping receiver waits for open requests to finish (``FLOWLEDGER_RECEIVER_SHUTDOWN_S``)."""
"""Connections a serving process keeps open at once (lowered to fit the process's file descriptor limit)."""

DEFAULT_RETENTION_INTERVAL_S: Final = 3600.0
DEFAULT_RETENTION_MAX_RUNS_PER_PASS: Final = 1000
"""Runs one retention pass purges at most: a pass holds the writer briefly, so ingest is not starved."""

DEFAULT_CHECKPOINT_INTERVAL_S: Final = 300.0

DEFAULT_RECONCILE_INTERVAL_S: Final = 300.0
DEFAULT_RECONCILE_RUNS_PER_PASS: Final = 500
"""Runs of the whole ledger one reconciliation pass checks, in run-id order, after the previous pass's."""
DEFAULT_RECONCILE_RECENT_EVENTS: Final = 10_000
"""Newest ledger entries whose runs each reconciliation pass checks (those appended since the previous pass)."""

DEFAULT_OTLP_METRIC_SERIES_MAX: Final = 10_000
"""OTLP metric series kept; points of a new series beyond it are refused (partial success)."""
DEFAULT_OTLP_METRIC_POINTS_MAX: Final = 1_000_000
"""OTLP metric data points kept; beyond it the oldest go first."""
DEFAULT_OTLP_LOG_RECORDS_MAX: Final = 1_000_000
"""OTLP log records kept; beyond it the oldest go first."""
DEFAULT_OTLP_LINK_INTERVAL_S: Final = 2.0
"""How often OTLP log records that came before their run's events are looked at again."""
DEFAULT_GRPC_PORT: Final = 4317
"""The OTLP/gRPC port by convention (``flowledger serve --grpc-port``; off unless asked)."""

_ENV_PREFIX: Final = "FLOWLEDGER_RECEIVER_"
_SECONDS_PER_DAY: Final = 86_400.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RetentionPolicy:
    """How long runs are kept: by age, by count per workflow, or both; for one project or all."""

    project: str | None = None
    """Only this project's runs (None: every run)."""
    max_age_s: float | None = None
    """Finished runs that started longer ago than this are purged."""
    max_runs_per_workflow: int | None = None
    """Only the newest N finished runs of each workflow are kept."""

    def describe(self) -> str:
        """How a purge entry names this policy."""
        parts = [
            f"{name}={value}"
            for name, value in (
                ("project", self.project),
                ("max_age_s", self.max_age_s),
                ("max_runs_per_workflow", self.max_runs_per_workflow),
            )
            if value is not None
        ]
        return "retention policy " + " ".join(parts)


@dataclass(frozen=True, kw_only=True, slots=True)
class IngestLimits:
    """What one ``POST /v1/events`` may contain; beyond them the receiver answers 413 or rejects the event."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Largest request body as sent (compressed or not)."""
    max_inflated_bytes: int = DEFAULT_MAX_INFLATED_BYTES
    """Largest body after gzip decompression; a gzip bomb stops here without inflating the rest."""
    max_batch_events: int = DEFAULT_MAX_BATCH_EVENTS
    """Most events in one batch."""
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    """Largest single event, measured in its canonical encoding."""
    max_depth: int = DEFAULT_MAX_DEPTH
    """Deepest nesting of objects and arrays inside one event."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ReceiverConfig:
    """Everything ``flowledger serve`` can be told."""

    db_path: Path = DEFAULT_DB_PATH
    db_url: str | None = None
    """A PostgreSQL URL: the receiver stores there (the PostgreSQL engine) instead of in ``db_path``."""
    limits: IngestLimits = field(default_factory=IngestLimits)
    write_queue_max_requests: int = DEFAULT_WRITE_QUEUE_MAX_REQUESTS
    """Requests waiting for the writer; beyond it ingest answers 503 with Retry-After."""
    commit_max_events: int = DEFAULT_COMMIT_MAX_EVENTS
    """Most events the writer commits in one transaction (several requests are grouped)."""
    switch_interval_s: float = DEFAULT_SWITCH_INTERVAL_S
    """The interpreter's thread switch interval in ``flowledger serve`` (see :data:`DEFAULT_SWITCH_INTERVAL_S`)."""
    retry_after_s: int = DEFAULT_RETRY_AFTER_S
    stuck_after_s: float = DEFAULT_STUCK_AFTER_S
    """A running run whose last event is older than this is marked stuck by the sweeper."""
    sweep_interval_s: float = DEFAULT_SWEEP_INTERVAL_S
    """How often the sweeper looks for stuck runs; 0 turns it off."""
    readers: int = DEFAULT_READERS
    """Read-only connections serving the query API."""
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S
    """Seconds one query may run before it is stopped (see :data:`DEFAULT_READ_TIMEOUT_S`); 0: no limit."""
    api_keys: Mapping[str, str] = field(default_factory=dict)
    """Bearer token -> project. Empty: no authentication."""
    forward_endpoint: str | None = None
    """Base URL of an upstream OTLP/HTTP endpoint that receives a copy of every OTLP body; None: off."""
    forward_headers: tuple[tuple[str, str], ...] = ()
    """Extra headers of forwarded requests (an upstream's API key)."""
    forward_queue_max_requests: int = DEFAULT_FORWARD_QUEUE_MAX_REQUESTS
    """OTLP bodies waiting to be forwarded; beyond it they are dropped and counted."""
    forward_timeout_s: float = DEFAULT_FORWARD_TIMEOUT_S
    """Timeout of one forwarded request."""
    trace_url_template: str | None = None
    """External trace URL with ``{trace_id}`` (``FLOWLEDGER_TRACE_URL_TEMPLATE``); runs get a ``trace_url``."""
    max_body_bytes_in_flight: int = DEFAULT_MAX_BODY_BYTES_IN_FLIGHT
    """Bytes of ingest bodies (once inflated) read and parsed at once; a request they cannot cover is answered
    503 with Retry-After before its body is read (one larger than all of it waits for an empty receiver)."""
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    """A request whose headers are not complete this long after its connection opened (or its previous
    response) is answered 408 and the connection closed; an idle connection is closed."""
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    """Connections open at once; a further one is answered 503 with Retry-After and closed at once."""
    shutdown_s: float = DEFAULT_SHUTDOWN_S
    """Seconds a stopping receiver waits for open requests before closing them; 0: it does not wait."""
    retention: tuple[RetentionPolicy, ...] = ()
    """Retention policies (``FLOWLEDGER_RECEIVER_RETENTION``, JSON: see :func:`parse_retention`); empty: keep all."""
    retention_interval_s: float = DEFAULT_RETENTION_INTERVAL_S
    """Seconds between retention passes; 0 turns the task off."""
    retention_max_runs_per_pass: int = DEFAULT_RETENTION_MAX_RUNS_PER_PASS
    checkpoint_dir: Path | None = None
    """Where the receiver writes signed checkpoints (keep it off the database's disk); None: off."""
    checkpoint_key: Path | None = None
    """The signing key (written by ``flowledger keygen``) of those checkpoints."""
    checkpoint_interval_s: float = DEFAULT_CHECKPOINT_INTERVAL_S
    """Seconds between checkpoints (one is written only when the ledger grew)."""
    checkpoint_url: str | None = None
    """Also POST each checkpoint (text/plain) to this URL; None: off."""
    reconcile_interval_s: float = DEFAULT_RECONCILE_INTERVAL_S
    """Seconds between reconciliation passes (projections against a fresh fold of the ledger); 0 turns them off."""
    reconcile_runs_per_pass: int = DEFAULT_RECONCILE_RUNS_PER_PASS
    """Runs of the whole ledger one pass checks, continuing where the previous pass stopped."""
    reconcile_recent_events: int = DEFAULT_RECONCILE_RECENT_EVENTS
    """A pass also checks the runs of the ledger entries appended since the previous one, at most this many."""

    resume_endpoints: Mapping[str, str] = field(default_factory=dict)
    """Workflow id -> base URL of its generated http app, where the viewer's Resume button sends a resume
    (``FLOWLEDGER_RESUME_ENDPOINTS``, see :mod:`._resume_endpoints`)."""

    otlp_metric_series_max: int = DEFAULT_OTLP_METRIC_SERIES_MAX
    otlp_metric_points_max: int = DEFAULT_OTLP_METRIC_POINTS_MAX
    otlp_log_records_max: int = DEFAULT_OTLP_LOG_RECORDS_MAX
    otlp_link_interval_s: float = DEFAULT_OTLP_LINK_INTERVAL_S
    """Seconds between passes linking OTLP log records that arrived before their run's events; 0: off."""
    grpc_port: int | None = None
    """Also serve OTLP over gRPC on this port (0: any free one); None: off. Needs the ``grpc`` extra."""
    listen_host: str = "127.0.0.1"
    """The interface the receiver listens on, its HTTP port and its gRPC port (``flowledger serve`` passes its
    ``--host``); on a loopback address it answers only to its loopback names (see :mod:`._origin_guard`)."""
    allowed_hosts: tuple[str, ...] | None = None
    """The names (``Host`` headers) the receiver answers to, ``*`` for any (``FLOWLEDGER_RECEIVER_ALLOWED_HOSTS``,
    comma-separated); None: decided by :attr:`listen_host` (:func:`~._origin_guard.allowed_hosts_for`)."""


class _Range(NamedTuple):
    """The values a numeric setting may take: ``low`` to ``high``; ``low_open``: more than ``low``."""

    low: float
    high: float
    low_open: bool = False
    zero: str = ""
    """What 0 means, when it is allowed and means something of its own ("off")."""

    def span(self) -> str:
        low, high = _shown(self.low), _shown(self.high)
        return f"more than {low} and at most {high}" if self.low_open else f"from {low} to {high}"

    def advice(self, kind: type) -> str:
        number = "whole number" if kind is int else "number"
        return f"a {number} {self.span()}" + (f" (0 {self.zero})" if self.zero else "")

    def holds(self, value: float) -> bool:
        if not math.isfinite(value) or value > self.high:
            return False
        return value > self.low if self.low_open else value >= self.low


def _shown(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


_YEAR_S: Final = 365 * _SECONDS_PER_DAY
_HOUR_S: Final = 3600.0
_MANY: Final = 1_000_000_000
_BYTES_MAX: Final = 1 << 40
_RANGES: Final[Mapping[str, _Range]] = {
    "max_body_bytes": _Range(1, _BYTES_MAX),
    "max_inflated_bytes": _Range(1, _BYTES_MAX),
    "max_batch_events": _Range(1, _MANY),
    "max_event_bytes": _Range(1, _BYTES_MAX),
    "max_depth": _Range(1, 10_000),
    "write_queue_max_requests": _Range(1, _MANY),
    "commit_max_events": _Range(1, _MANY),
    "switch_interval_s": _Range(0, 1, low_open=True),
    "retry_after_s": _Range(0, _HOUR_S),
    "stuck_after_s": _Range(0, _YEAR_S, low_open=True),
    "sweep_interval_s": _Range(0, _YEAR_S, zero="turns the sweeper off"),
    "readers": _Range(1, 256),
    "read_timeout_s": _Range(0, _HOUR_S, zero="sets no limit"),
    "forward_queue_max_requests": _Range(1, _MANY),
    "forward_timeout_s": _Range(0, _HOUR_S, low_open=True),
    "max_body_bytes_in_flight": _Range(1, _BYTES_MAX),
    "header_timeout_s": _Range(0, _HOUR_S, low_open=True),
    "max_connections": _Range(1, _MANY),
    "shutdown_s": _Range(0, _HOUR_S, zero="does not wait"),
    "retention_interval_s": _Range(0, _YEAR_S, zero="turns retention off"),
    "retention_max_runs_per_pass": _Range(1, _MANY),
    "checkpoint_interval_s": _Range(0, _YEAR_S, zero="writes one at shutdown only"),
    "reconcile_interval_s": _Range(0, _YEAR_S, zero="turns reconciliation off"),
    "reconcile_runs_per_pass": _Range(1, _MANY),
    "reconcile_recent_events": _Range(0, _MANY),
    "otlp_metric_series_max": _Range(1, _MANY),
    "otlp_metric_points_max": _Range(1, _MANY),
    "otlp_log_records_max": _Range(1, _MANY),
    "otlp_link_interval_s": _Range(0, _YEAR_S, zero="turns the linking off"),
    "grpc_port": _Range(0, 65535, zero="takes any free port"),
}
"""The range of every numeric ``FLOWLEDGER_RECEIVER_*`` setting, checked where the environment is read."""


def _parse(name: str, raw: str, kind: type) -> int | float:
    """The number ``raw`` of the setting ``name``, finite and in its range; ConfigError naming the variable."""
    variable = _ENV_PREFIX + name.upper()
    allowed = _RANGES[name]
    value: int | float
    try:
        value = int(raw) if kind is int else float(raw)
    except ValueError:
        shown = raw.strip()[:40]
        raise ConfigError(f"{variable}={shown!r} is not a number: set it to {allowed.advice(kind)}.") from None
    if not allowed.holds(value):
        raise ConfigError(f"{variable}={raw.strip()[:40]} must be {allowed.advice(kind)}.")
    return value


def config_from_env(base: ReceiverConfig | None = None, environ: Mapping[str, str] | None = None) -> ReceiverConfig:
    """Apply ``FLOWLEDGER_RECEIVER_<FIELD>`` variables (limits included) to ``base``."""
    env = os.environ if environ is None else environ
    config = base or ReceiverConfig()
    limit_changes: dict[str, object] = {}
    for f in fields(IngestLimits):
        raw = env.get(_ENV_PREFIX + f.name.upper())
        if raw is not None:
            limit_changes[f.name] = _parse(f.name, raw, int)
    changes: dict[str, object] = {}
    for f in fields(ReceiverConfig):
        if (
            f.name
            in {
                "limits",
                "api_keys",
                "db_path",
                "db_url",
                "retention",
                "resume_endpoints",
                "listen_host",
                "allowed_hosts",
            }
            | _OTLP_TEXT_FIELDS
            | _CHECKPOINT_TEXT_FIELDS
        ):
            continue
        raw = env.get(_ENV_PREFIX + f.name.upper())
        if raw is not None:
            kind = float if f.name.endswith("_s") and f.name != "retry_after_s" else int
            changes[f.name] = _parse(f.name, raw, kind)
    changes.update(_otlp_text_settings(env))
    resume_endpoints = env.get(RESUME_ENDPOINTS_ENV, "").strip()
    if resume_endpoints:
        changes["resume_endpoints"] = _resume_endpoints(resume_endpoints)
    for name in _CHECKPOINT_TEXT_FIELDS:
        raw = env.get(_ENV_PREFIX + name.upper(), "").strip()
        if raw:
            changes[name] = check_checkpoint_url(raw) if name == "checkpoint_url" else Path(raw)
    allowed_hosts = env.get(_ENV_PREFIX + "ALLOWED_HOSTS")
    if allowed_hosts is not None and allowed_hosts.strip():
        changes["allowed_hosts"] = parse_allowed_hosts(allowed_hosts)
    retention = env.get(_ENV_PREFIX + "RETENTION")
    if retention:
        changes["retention"] = parse_retention(retention)
    if limit_changes:
        changes["limits"] = replace(config.limits, **limit_changes)  # type: ignore[arg-type]
    return replace(config, **changes) if changes else config  # type: ignore[arg-type]


def _resume_endpoints(text: str) -> Mapping[str, str]:
    """The resume endpoints; an error names the entry, never its URL (which may hold a password)."""
    try:
        return parse_resume_endpoints(text)
    except ConfigError:
        for number, entry in enumerate((part.strip() for part in text.split(",")), start=1):
            try:
                parse_resume_endpoints(entry)
            except ConfigError:
                raise ConfigError(
                    f"{RESUME_ENDPOINTS_ENV} entry {number} is not WORKFLOW_ID=URL with an http:// or https:// URL; "
                    "write for example order-intake=http://127.0.0.1:8000"
                ) from None
        raise  # pragma: no cover - a failing list has a failing entry


def shown_url(url: str) -> str:
    """``url`` without its user part and with its query values hidden: safe to print or log."""
    if "://" not in url:
        return "***"
    try:
        parts = urlsplit(url)
        host = parts.netloc.rsplit("@", 1)[-1]
        query = "&".join(f"{pair.partition('=')[0]}=***" for pair in parts.query.split("&") if pair)
        return parts._replace(netloc=host, query=query, fragment="").geturl()
    except ValueError:
        return url.split("://", 1)[0] + "://***"


def check_checkpoint_url(value: str) -> str:
    """Check ``FLOWLEDGER_RECEIVER_CHECKPOINT_URL``: an http(s) URL with a host; the error never shows a secret."""
    variable = _ENV_PREFIX + "CHECKPOINT_URL"
    text = value.strip()
    try:
        parts = urlsplit(text)
        ok = parts.scheme.lower() in {"http", "https"} and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError(
            f"{variable}={shown_url(text)!r} must be an http:// or https:// URL such as http://host/checkpoints"
        )
    return text


_NOT_NUMBERS: Final = frozenset({"limits", "api_keys", "db_path", "db_url", "retention", "resume_endpoints"})
_OTLP_TEXT_FIELDS: Final = frozenset({"forward_endpoint", "forward_headers", "trace_url_template"})
_CHECKPOINT_TEXT_FIELDS: Final = frozenset({"checkpoint_dir", "checkpoint_key", "checkpoint_url"})


def _otlp_text_settings(env: Mapping[str, str]) -> dict[str, object]:
    """Forwarding and trace-link settings, which are text rather than numbers."""
    out: dict[str, object] = {}
    endpoint = env.get(_ENV_PREFIX + "FORWARD_ENDPOINT", "").strip()
    if endpoint:
        out["forward_endpoint"] = parse_forward_endpoint(endpoint)
    headers = env.get(_ENV_PREFIX + "FORWARD_HEADERS")
    if headers:
        out["forward_headers"] = parse_forward_headers(headers)
    template = template_from_env(env)
    if template is not None:
        out["trace_url_template"] = template
    return out


TRACE_URL_ENV: Final = "FLOWLEDGER_TRACE_URL_TEMPLATE"
_FORWARD_ENDPOINT_ENV: Final = _ENV_PREFIX + "FORWARD_ENDPOINT"
_FORWARD_HEADERS_ENV: Final = _ENV_PREFIX + "FORWARD_HEADERS"
_OTLP_SIGNAL_PATH: Final = re.compile(r"/v1/[a-z]+$")


def check_template(template: str) -> str:
    """Return ``template`` if it is an http(s) URL containing ``{trace_id}``; ConfigError otherwise."""
    text = template.strip()
    if not text.lower().startswith(("http://", "https://")):
        raise ConfigError(f"{TRACE_URL_ENV}={template!r} must be an http:// or https:// URL")
    if TRACE_ID_PLACEHOLDER not in text:
        raise ConfigError(
            f"{TRACE_URL_ENV}={template!r} has no {TRACE_ID_PLACEHOLDER} placeholder; "
            "write for example http://jaeger:16686/trace/{trace_id}"
        )
    return text


def template_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """The checked trace-link template from the environment, or None when it is not set."""
    raw = (os.environ if environ is None else environ).get(TRACE_URL_ENV, "").strip()
    return check_template(raw) if raw else None


def parse_forward_endpoint(value: str) -> str:
    """Check an upstream base URL (``FLOWLEDGER_RECEIVER_FORWARD_ENDPOINT``): http(s) with a host, no trailing slash.

    A query string is kept (a token some collectors and proxies take there): the forwarder joins the signal path
    onto the URL's path and sends the query after it. An ``@`` after where the host seems to end is refused (a
    password holding an unescaped ``/ ? #``: :func:`~flowledger._url.userinfo_cut_short`); messages show the URL
    as :func:`~flowledger._url.masked` does.
    """
    text = value.strip()
    try:
        parts = urlsplit(text)
        ok = parts.scheme.lower() in {"http", "https"} and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number ("user:pa?ss@host")
    except ValueError:
        ok = False
    if userinfo_cut_short(text):
        # A password holding an unescaped / ? or # ("user:12/ss@host" is host "user", port 12): the request would
        # go elsewhere. (An @ in the query after an "=" is the query's: "?email=ops@example.com".)
        raise ConfigError(
            f"{_FORWARD_ENDPOINT_ENV} holds an @ after where its host seems to end: give an http:// or https:// "
            "base URL such as "
            "http://user:pw@collector:4318, with / ? # @ in a user name or password percent-encoded "
            "(%2F %3F %23 %40). The value is not shown."
        )
    if not ok:
        raise ConfigError(
            f"{_FORWARD_ENDPOINT_ENV}={masked(text)!r} must be an http:// or https:// base URL "
            "such as http://collector:4318"
        )
    path = parts.path.rstrip("/")
    signal_path = _OTLP_SIGNAL_PATH.search(path)
    if signal_path:
        raise ConfigError(
            f"{_FORWARD_ENDPOINT_ENV}={masked(text)!r} ends with {signal_path.group()}; give the base URL "
            "(the signal paths are added)"
        )
    return parts._replace(path=path, fragment="").geturl()  # a fragment is never sent


def parse_forward_headers(value: str | None) -> tuple[tuple[str, str], ...]:
    """Parse ``name1=value1,name2=value2`` (the ``OTEL_EXPORTER_OTLP_HEADERS`` form: names and values
    percent-encoded, so ``Authorization=Basic%20abc`` sends ``Basic abc``)."""
    pairs: list[tuple[str, str]] = []
    for part in (value or "").split(","):
        if not part.strip():
            continue
        name, sep, text = part.partition("=")
        where = f"{_FORWARD_HEADERS_ENV} entry {len(pairs) + 1}"
        try:
            name, text = unquote(name.strip(), errors="strict"), unquote(text.strip(), errors="strict")
        except UnicodeDecodeError:
            raise ConfigError(f"{where}: its percent-encoding is not UTF-8 (values are not shown)") from None
        if not sep or not name:  # never the text itself: it may be a header's secret value
            raise ConfigError(
                f"{_FORWARD_HEADERS_ENV} must look like name1=value1,name2=value2; "
                f"entry {len(pairs) + 1} has no name=value (values are not shown)"
            )
        if not _HEADER_NAME.fullmatch(name):
            raise ConfigError(f"{where}: {name!r} is not an HTTP header name")
        problem = _header_value_problem(text)
        if problem:  # named by the header's name, never by the value: it is the upstream's secret
            raise ConfigError(f"{where}: the value of {name} {problem} (values are not shown)")
        pairs.append((name, text))
    return tuple(pairs)


_HEADER_NAME: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
"""An HTTP header name (RFC 9110 token)."""
FORWARD_HEADER_ENCODING: Final = "latin-1"
"""How the forwarder turns header values into the bytes HTTP carries: one byte per character, as servers that
decode header bytes (this receiver, Starlette, Python's http.server, the OTel Python exporter's requests) read
them. A value holding a character beyond it cannot be sent, and is refused at start."""
_CONTROL: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
"""What an HTTP field value may not hold (RFC 9110: visible characters, spaces, tabs and obs-text)."""


def _header_value_problem(text: str) -> str | None:
    """Why ``text`` cannot be sent as a header value, or None. Checked at start: at send time the failure's text
    would quote the value (``UnicodeEncodeError('ascii', 'the token', ...)``)."""
    try:
        text.encode(FORWARD_HEADER_ENCODING)
    except UnicodeEncodeError:
        return "holds a character beyond Latin-1 once decoded, which an HTTP header cannot carry; use ASCII"
    if _CONTROL.search(text):
        return "holds a control character (a line break, NUL, ...) once decoded"
    if text != text.strip(" \t"):
        return "starts or ends with a space or tab once decoded, which HTTP drops"
    return None


_RETENTION_COUNT_MAX: Final = 1_000_000_000
_RETENTION_AGE_MAX_DAYS: Final = 100 * 365


def _retention_age(item: Mapping[str, object], where: str) -> float | None:
    """A policy's maximum age in seconds (from ``max_age_days`` or ``max_age_s``): finite, positive, bounded."""
    key = "max_age_days" if "max_age_days" in item else "max_age_s"
    value = item.get(key)
    if value is None:
        return None
    scale = _SECONDS_PER_DAY if key == "max_age_days" else 1.0
    high = _RETENTION_AGE_MAX_DAYS * _SECONDS_PER_DAY / scale
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= high:
        raise ConfigError(f"{where}: {key} must be a positive number, at most {_shown(high)}.")
    return float(value) * scale


_HOST_NAME: Final = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\.?")


def parse_allowed_hosts(text: str) -> tuple[str, ...]:
    """``FLOWLEDGER_RECEIVER_ALLOWED_HOSTS``: comma-separated host names or IP addresses (no ports), or ``*``."""
    variable = _ENV_PREFIX + "ALLOWED_HOSTS"
    hosts: list[str] = []
    for index, raw in enumerate(text.split(",")):
        entry = raw.strip().lower()
        if not entry:
            continue
        address = entry[1:-1] if entry.startswith("[") and entry.endswith("]") else entry
        try:
            ipaddress.ip_address(address)
        except ValueError:
            if entry != "*" and (len(entry) > 253 or not _HOST_NAME.fullmatch(entry)):
                shown = raw.strip()[:40]
                raise ConfigError(
                    f"{variable}[{index}]={shown!r} is not a host name or an IP address: give names such as "
                    "flowledger.example.com, without a scheme or a port, separated by commas (* for any name)"
                ) from None
        hosts.append(address)
    if not hosts:
        raise ConfigError(f"{variable} names no host: give names separated by commas, or * for any name")
    return tuple(dict.fromkeys(hosts))


def parse_retention(text: str) -> tuple[RetentionPolicy, ...]:
    """Policies from JSON: ``[{"project": "p", "max_age_days": 30, "max_runs_per_workflow": 1000}, ...]``.

    ``max_age_days`` or ``max_age_s``; ``project`` is optional. ConfigError names what is wrong.
    """
    variable = _ENV_PREFIX + "RETENTION"
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{variable} is not JSON ({exc}); give a list of policies.") from None
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list):
        raise ConfigError(f"{variable} must be a JSON list of policies.")
    policies = []
    for index, item in enumerate(raw):
        where = f"{variable}[{index}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where} must be an object.")
        unknown = set(item) - {"project", "max_age_days", "max_age_s", "max_runs_per_workflow"}
        if unknown:
            raise ConfigError(f"{where} has unknown keys {sorted(unknown)}.")
        age = _retention_age(item, where)
        count = item.get("max_runs_per_workflow")
        project = item.get("project")
        if count is not None and (
            not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= _RETENTION_COUNT_MAX
        ):
            raise ConfigError(
                f"{where}: max_runs_per_workflow must be a whole number from 0 to {_RETENTION_COUNT_MAX}."
            )
        if project is not None and (not isinstance(project, str) or not PROJECT_PATTERN.fullmatch(project)):
            raise ConfigError(f"{where}: project must be a project name ([A-Za-z0-9][A-Za-z0-9_.-]*, 128 at most).")
        if age is None and count is None:
            raise ConfigError(f"{where} limits nothing: give max_age_days (or max_age_s) or max_runs_per_workflow.")
        policies.append(RetentionPolicy(project=project, max_age_s=age, max_runs_per_workflow=count))
    return tuple(policies)
