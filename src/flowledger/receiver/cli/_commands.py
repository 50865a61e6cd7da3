"""The receiver's commands of the ``flowledger`` CLI: serve, runs, show, export, verify, rebuild, import.

``flowledger.cli`` mounts :data:`COMMANDS`. Importing this module is cheap:
the server, the database driver and rich are imported inside the commands.
Every error is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import errno
import functools
import json
import math
import os
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, ParamSpec, TypeVar

import click

from flowledger._wire import NodeStatus, RunStatus
from flowledger.receiver._error_names import public_error_types
from flowledger.receiver._export import ExportFormat
from flowledger.receiver._interrupt import StartInterrupt
from flowledger.receiver._params import MAX_OFFSET
from flowledger.receiver.cli._api_params import RUN_ID, RUN_PROJECT, SEARCH, WORKFLOW_ID
from flowledger.receiver.cli._context_options import context_lines, context_options
from flowledger.receiver.cli._node_records import breakdown_text, node_record_lines
from flowledger.receiver.cli._output_file import OUTPUT_FILE
from flowledger.receiver.cli._terminal import Terminal, TerminalTable, echo
from flowledger.receiver.store._records import NODE_FIELDS, RUN_FIELDS, RecordField

if TYPE_CHECKING:
    from flowledger.receiver.cli._sources import Source
    from flowledger.receiver.store._run_filter import RunContextFilter

__all__ = ["COMMANDS"]

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_DB: Final = "./flowledger.db"
DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 4318
"""The OTLP/HTTP port."""
DEFAULT_URL: Final = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
MAX_PORT: Final = 65535
EXIT_BROKEN_CHAIN: Final = 1
_STATUS_STYLE: Final[dict[str, str]] = {
    RunStatus.SUCCEEDED: "green",
    RunStatus.FAILED: "red",
    RunStatus.ABORTED: "red",
    RunStatus.STUCK: "yellow",
    RunStatus.RUNNING: "cyan",
    NodeStatus.SKIPPED: "dim",
}
"""Colour of a run or node status in the tables (node statuses share the run ones' names)."""
_STATUS_CHOICE: Final = click.Choice([s.value for s in RunStatus])


def _fail(message: str, code: int = EXIT_FAILURE) -> None:
    echo(f"error: {message}", err=True)
    sys.exit(code)


EXIT_BROKEN_PIPE: Final = 128 + 13
"""What a shell reports for a tool that SIGPIPE ended (``export ... | head``)."""


def _quiet_broken_pipe() -> None:
    """The reader went away (``| head``): stop quietly, as Unix tools do, with no error line and no flush error."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # what is still buffered goes nowhere, without a second error at exit
    except (OSError, ValueError):
        pass
    sys.exit(EXIT_BROKEN_PIPE)


def _clean_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn every expected failure into one line on stderr: exit 2 for what the command was given (a
    :class:`UsageError`: a missing database or key file, a malformed key, an ambiguous run id), 1 otherwise.
    Every command is wrapped so: a text option or argument that is not UTF-8 is refused here, for all of them."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from flowledger._exceptions import FlowledgerError, UsageError
        from flowledger.receiver.cli._option_text import undecodable_param

        context = click.get_current_context(silent=True)
        if context is not None and (undecodable := undecodable_param(context)) is not None:
            _fail(undecodable, EXIT_USAGE)
        try:
            return command(*args, **kwargs)
        except FlowledgerError as exc:  # what the command was given (UsageError) exits 2, what it found 1
            code = EXIT_USAGE if isinstance(exc, UsageError) else EXIT_FAILURE
            _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, code)
        except BrokenPipeError:
            _quiet_broken_pipe()
        except OSError as exc:
            _fail(f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
        except KeyboardInterrupt:
            _fail("interrupted")
        raise AssertionError("unreachable")  # pragma: no cover

    return wrapper


class DbTarget(click.ParamType):  # type: ignore[type-arg]
    """``--db``: a SQLite file (a Path) or a ``postgresql://`` URL (its text, checked; the password never shown)."""

    name = "PATH|URL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path | str:
        if isinstance(value, Path):
            return value
        from flowledger._exceptions import ConfigError
        from flowledger.receiver.store.postgres import check_postgres_url, is_postgres_url

        text = str(value)
        scheme, sep, _rest = text.partition("://")
        if sep and not is_postgres_url(text) and scheme.replace("+", "").isalnum():  # never the rest: a password
            self.fail(f"{scheme}:// is not a database flowledger takes: give a SQLite file or a postgresql:// URL")
        if not is_postgres_url(text):
            return Path(text)
        source = ctx.get_parameter_source(param.name) if ctx is not None and param is not None and param.name else None
        option = "FLOWLEDGER_DB" if source is click.core.ParameterSource.ENVIRONMENT else "--db"
        try:
            return check_postgres_url(text, option=option)
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)


DB_TARGET: Final = DbTarget()


class PositiveSeconds(click.FloatRange):
    """Seconds, more than 0 and at most a year: click's FloatRange alone lets ``nan`` through."""

    name = "seconds"

    def __init__(self) -> None:
        super().__init__(min=0, min_open=True, max=_YEAR_S)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a number of seconds (more than 0, at most {int(_YEAR_S)}).", param, ctx)
        return number


_YEAR_S: Final = 365 * 86_400.0
POSITIVE_SECONDS: Final = PositiveSeconds()


def _db_option(default: str | None) -> Callable[[Callable[P, R]], Callable[P, R]]:
    return click.option(
        "--db",
        "db",
        type=DB_TARGET,
        default=default,
        show_default=default is not None,
        help="Read this database directly: a SQLite file or a postgresql:// URL.",
    )


_url_option = click.option(
    "--url", "url", default=None, help="Read a running receiver at this base URL [default: $FLOWLEDGER_ENDPOINT]."
)
_key_option = click.option(
    "--api-key",
    "api_key",
    envvar="FLOWLEDGER_API_KEY",
    default=None,
    help="Bearer key for --url [env FLOWLEDGER_API_KEY].",
)
_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of a table.")


def _checked_key(api_key: str | None) -> str | None:
    """The --api-key (or $FLOWLEDGER_API_KEY) value, refused in one line that never shows it when it cannot be sent."""
    if api_key is None:
        return None
    from flowledger._apikey import check_api_key

    context = click.get_current_context(silent=True)
    source = context.get_parameter_source("api_key") if context is not None else None
    origin = "FLOWLEDGER_API_KEY" if source is click.core.ParameterSource.ENVIRONMENT else "--api-key"
    return check_api_key(api_key, origin=origin)


def _source(db: Path | str | None, url: str | None, api_key: str | None) -> Source:
    from flowledger.receiver.cli._sources import DbSource, UrlSource

    api_key = _checked_key(api_key)
    if db is not None and url is not None:
        raise click.UsageError("give --db or --url, not both")
    if db is not None:
        return DbSource(db)
    url, origin = _endpoint(url)
    if url is None:
        local = Path(DEFAULT_DB)
        return DbSource(local) if local.exists() else UrlSource(DEFAULT_URL, api_key)
    return UrlSource(url, api_key, origin=origin)


ENDPOINT_ENV: Final = "FLOWLEDGER_ENDPOINT"


def _endpoint(url: str | None) -> tuple[str | None, str]:
    """``--url``, else ``$FLOWLEDGER_ENDPOINT`` (None when neither is set), and which it was, as errors name it."""
    if url is not None:
        return url, "--url"
    return os.environ.get(ENDPOINT_ENV), ENDPOINT_ENV


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2))  # exact: JSON escapes C0 itself


# --- serve ---------------------------------------------------------------


def _prepare_postgres(url: str) -> None:
    """Connect to the PostgreSQL database once and bring its schema up to date (StoreError in one sentence)."""
    import asyncio

    from flowledger.receiver.store.postgres import PostgresStore

    async def main() -> None:
        store = PostgresStore(url, pool_min=1, pool_max=1)
        await store.open()
        await store.close()

    asyncio.run(main())


@click.command("serve")
@click.option(
    "--db",
    type=DB_TARGET,
    envvar="FLOWLEDGER_DB",
    default=DEFAULT_DB,
    show_default=True,
    help="The SQLite database (created when missing) or a postgresql:// URL [env FLOWLEDGER_DB].",
)
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Interface to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True, help="The OTLP/HTTP port."
)
@click.option(
    "--grpc-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Also serve OTLP over gRPC on this port (4317 by convention; needs the grpc extra) "
    "[env FLOWLEDGER_RECEIVER_GRPC_PORT].",
)
@click.option(
    "--api-keys",
    "api_keys",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help='TOML file with a [keys] table of "token" = "project" [env FLOWLEDGER_RECEIVER_API_KEYS].',
)
@click.option("--stuck-after-s", type=POSITIVE_SECONDS, default=None, help="Mark runs stuck after this.")
@click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info", show_default=True
)
@_clean_errors
def serve_command(
    db: Path | str,
    host: str,
    port: int,
    grpc_port: int | None,
    api_keys: Path | None,
    stuck_after_s: float | None,
    log_level: str,
) -> None:
    """Run the receiver: ingest at /v1/events, queries at /api/runs."""
    with StartInterrupt() as interrupt:  # first: a Ctrl-C while starting is never lost
        from dataclasses import replace

        from flowledger.receiver._auth import ApiKeys, keys_from_env, load_keys_file, merge_keys
        from flowledger.receiver._checkpointer import check_checkpoint_settings
        from flowledger.receiver._config import ReceiverConfig, config_from_env
        from flowledger.receiver._server import bind_socket, serve
        from flowledger.receiver.store._sqlite import prepare_file

        if isinstance(db, str):  # a PostgreSQL URL (checked by DbTarget)
            config = config_from_env(ReceiverConfig(db_url=db))
        else:
            config = config_from_env(ReceiverConfig(db_path=db))
        keys = keys_from_env(os.environ.get("FLOWLEDGER_RECEIVER_API_KEYS"))
        if api_keys is not None:
            keys = merge_keys(keys, load_keys_file(api_keys), api_keys)
        ApiKeys(keys)  # a bad key is one error line before anything claims to be serving
        check_checkpoint_settings(config)  # as is a checkpoint key or directory that cannot be used
        config = replace(config, api_keys=keys)
        if stuck_after_s is not None:
            config = replace(config, stuck_after_s=stuck_after_s)
        if grpc_port is not None:
            config = replace(config, grpc_port=grpc_port)
        config = replace(config, listen_host=host)
        if config.grpc_port is not None:
            grpc_source = "--grpc-port" if grpc_port is not None else "FLOWLEDGER_RECEIVER_GRPC_PORT"
            _check_grpc(host, config.grpc_port, http_port=port, source=grpc_source)
        try:  # a busy port is one error line, before anything claims to be serving or a database file is made
            sock = bind_socket(host, port)
        except OSError as exc:
            _fail(_bind_failure(host, port, exc))
            return
        # A bad --db is one error line here, not a failed app startup.
        try:
            if isinstance(db, str):
                from flowledger.receiver.store.postgres import redacted

                _prepare_postgres(db)
                shown = redacted(db)
            else:
                prepare_file(db)
                shown = str(db)
            interrupt.check()  # a Ctrl-C swallowed while starting (see _interrupt) stops it here
        except BaseException:
            sock.close()
            raise
        bound_port = sock.getsockname()[1]
        where = f"[{host}]" if ":" in host else host
        echo(
            f"flowledger receiver on http://{where}:{bound_port} with {shown}" + (" (API keys on)" if keys else ""),
            err=True,
        )
        if config.grpc_port is not None:
            echo(
                f"OTLP/gRPC on {where}:{config.grpc_port}" if config.grpc_port else "OTLP/gRPC on a free port", err=True
            )
        try:
            serve(config, sock=sock, log_level=log_level, interrupt=interrupt)
        except KeyboardInterrupt:
            pass  # Ctrl-C is how a receiver is stopped: it shut down cleanly, which is no error


def _bind_failure(host: str, port: int, exc: OSError) -> str:
    """What to tell a user whose ``--host``/``--port`` could not be bound: a port in use, or an address that is
    not this machine's (which another port would not fix)."""
    reason = (exc.strerror or str(exc)).lower()
    if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {host}:{port}: {reason}; pass an address of this machine as --host"
    if exc.errno == errno.EACCES:
        return f"cannot listen on {host}:{port}: {reason}; ports below 1024 need privileges, pass another --port"
    return f"cannot listen on {host}:{port}: {reason}; stop what uses it or pass another --port"


def _check_grpc(host: str, grpc_port: int, *, http_port: int, source: str) -> None:
    """One clear line and exit 2 without grpcio or with the HTTP port's number (``source`` names where it came
    from); exit 1 when the gRPC port is taken (before anything starts)."""
    import importlib.util

    from flowledger.receiver._server import bind_socket

    # The probe below cannot catch it: with SO_REUSEADDR a port binds twice while nothing listens on it, so the
    # HTTP socket bound it too, and the gRPC server then took it over (HTTP unreachable, both announced).
    # Port 0 twice is fine: each takes a free port of its own.
    if grpc_port and grpc_port == http_port:
        _fail(
            f"--port and {source} are both {grpc_port}: OTLP/HTTP and OTLP/gRPC need a port each; "
            f"pass another {source}",
            EXIT_USAGE,
        )
    if importlib.util.find_spec("grpc") is None:
        echo("error: --grpc-port needs grpcio; install the grpc extra: pip install 'flowledger[grpc]'", err=True)
        sys.exit(EXIT_USAGE)
    if not 0 <= grpc_port <= MAX_PORT:
        raise click.BadParameter(f"{grpc_port} is not a port (0 to {MAX_PORT})", param_hint="--grpc-port")
    try:
        bind_socket(host, grpc_port).close()
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        _fail(
            f"cannot listen for OTLP/gRPC on {host}:{grpc_port}: {reason}; "
            "stop what uses it or pass another --grpc-port"
        )


# --- runs / show / export ------------------------------------------------


@click.command("runs")
@click.option("--workflow", "workflow_id", type=WORKFLOW_ID, default=None, help="Only runs of this workflow id.")
@click.option(
    "--status",
    "statuses",
    type=_STATUS_CHOICE,
    multiple=True,
    help="Only runs with this status; repeat for several (--status failed --status aborted).",
)
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--offset", type=click.IntRange(0, MAX_OFFSET), default=0, show_default=True)  # the API's bound
@click.option("--cursor", default=None, help="Start after this cursor: the next of a previous --json answer.")
@click.option(
    "--search",
    type=SEARCH,
    default=None,
    help="Only runs whose errors, log lines or payload text hold these words (or whose id starts so).",
)
@click.option(
    "--attr", "attrs", multiple=True, metavar="KEY=VALUE", help="Only runs started with this attribute; may repeat."
)
@context_options
@_json_option
@_db_option(None)
@_url_option
@_key_option
@_clean_errors
def runs_command(
    workflow_id: str | None,
    statuses: tuple[str, ...],
    limit: int,
    offset: int,
    cursor: str | None,
    search: str | None,
    attrs: tuple[str, ...],
    as_json: bool,
    db: Path | None,
    url: str | None,
    api_key: str | None,
    context: RunContextFilter,
) -> None:
    """List runs, newest first."""
    from flowledger._exceptions import QueryError
    from flowledger.receiver.store._protocol import RunQuery
    from flowledger.receiver.store._views import RunPageCursor

    try:
        after = None if cursor is None else RunPageCursor.decode(cursor)
    except QueryError as exc:
        raise click.BadParameter(str(exc), param_hint="--cursor") from None
    statuses_asked = _run_statuses(statuses)
    query = RunQuery(
        workflow_id=workflow_id,
        statuses=statuses_asked,
        limit=limit,
        offset=offset,
        cursor=after,
        search=_search_text(search),
        attributes=_attributes(attrs),
        context=context,
    )
    page = _source(db, url, api_key).list_runs(query)
    _with_trace_urls(page.runs)
    public_error_types(page.runs)
    if as_json:
        next_cursor = None if page.next is None else page.next.encode()
        _print_json({"runs": page.runs, "total": page.total, "total_capped": page.total_capped, "next": next_cursor})
        return
    total = f"at least {page.total:,}" if page.total_capped else f"{page.total}"
    table = _table(f"{len(page.runs)} of {total} runs")
    console = Terminal()
    columns = _run_columns(_table_fields(RUN_FIELDS, page.runs), console.width)
    for header, style, _ in columns:
        table.add_column(header, **style)
    for run in page.runs:
        table.add_row(*(cell(run) for _, _, cell in columns))
    console.print(table)


def _with_trace_urls(runs: list[dict[str, Any]]) -> None:
    """Give each run its ``trace_url`` as ``GET /api/runs`` does (null without a template), so that ``--db`` and
    ``--url`` print the same runs: from ``FLOWLEDGER_TRACE_URL_TEMPLATE`` here, else the receiver's, as ``show``."""
    from flowledger.receiver._config import template_from_env
    from flowledger.receiver._trace_url import trace_url

    template = template_from_env()
    for run in runs:
        run["trace_url"] = trace_url(template, run.get("trace_id"), run.get("run_id")) or run.get("trace_url")


def _run_columns(
    fields: list[RecordField], console_width: int
) -> list[tuple[str, dict[str, Any], Callable[[dict[str, Any]], str]]]:
    """The columns of the table of runs: header, style and cell. Below :data:`WIDE_TERMINAL_COLUMNS`, the run
    context (project, user, agent, intent) shares one column, a value a line, so that the others keep their width."""
    context = [f for f in fields if f.table_if_set]
    stacked = console_width < WIDE_TERMINAL_COLUMNS and len(context) > 1
    columns: list[tuple[str, dict[str, Any], Callable[[dict[str, Any]], str]]] = []
    for field in fields:
        if stacked and field.table_if_set:
            if field is context[0]:
                columns.append(("context", {"overflow": "fold", "max_width": 16}, functools.partial(_context, context)))
            continue
        columns.append((_header(field), _column_style(field, console_width), functools.partial(_cell, field)))
    return columns


def _context(fields: list[RecordField], run: dict[str, Any]) -> str:
    from rich.markup import escape

    return "\n".join(escape(str(run[f.name])) for f in fields if run.get(f.name) is not None)


_NO_WRAP: Final = frozenset({"status", "dry_run", "duration_ms", "attempt", "item"})
"""Columns whose cells are short and stay on one line."""
_NARROW_WIDTH: Final = {"run_id": 19, "started_at": 10}
"""Below :data:`WIDE_TERMINAL_COLUMNS`, a run id folds once, after its fourth group (``01a23b80-4e62-726b-``),
and a time once, after its date."""
_WIDE_WIDTH: Final = {"run_id": 36, "started_at": 19}
_CONTEXT_MAX_WIDTH: Final = 24
"""The widest a run-context column (project, user, agent, intent) grows: a longer value folds."""
WIDE_TERMINAL_COLUMNS: Final = 120
"""From this many columns on, run ids and times stay on one line."""


def _table(title: str) -> TerminalTable:
    """A table that leaves its columns the width of the terminal: no vertical rules, one space between cells."""
    return TerminalTable(title)


def _column_style(field: RecordField, console_width: int) -> dict[str, Any]:
    if field.name in _NO_WRAP:
        return {"no_wrap": True}
    widths = _WIDE_WIDTH if console_width >= WIDE_TERMINAL_COLUMNS else _NARROW_WIDTH
    if field.name in widths:
        return {"overflow": "fold", "width": widths[field.name]}
    if field.table_if_set:
        return {"overflow": "fold", "max_width": _CONTEXT_MAX_WIDTH}
    return {"overflow": "fold"}


def _run_statuses(values: tuple[str, ...]) -> tuple[RunStatus, ...]:
    """The statuses of repeated ``--status`` options, each once, in the order given."""
    return tuple(dict.fromkeys(RunStatus(value) for value in values))


def _table_fields(fields: tuple[RecordField, ...], records: Sequence[dict[str, Any]] = ()) -> list[RecordField]:
    """The fields a CLI table of ``records`` shows, in the order of their columns: a field shown only when set
    (the run context) when some record has it."""
    shown = (
        f
        for f in fields
        if f.table is not None and (not f.table_if_set or any(r.get(f.name) is not None for r in records))
    )
    return sorted(shown, key=lambda f: f.table[0] if f.table else 0)


def _header(field: RecordField) -> str:
    return field.table[1] if field.table else field.name


def _cell(field: RecordField, record: dict[str, Any]) -> str:
    """One cell of a CLI table (rich markup): a field of a run or a node attempt as text."""
    from rich.markup import escape

    value = record.get(field.name)
    if field.name == "status":
        return _styled(value)
    if field.name == "duration_ms":
        return _duration(value)
    if field.name == "dry_run":
        return _mode(value)
    if field.name == "started_at":
        return _when(value)
    if field.name == "error":
        return escape(_error_text(value) or _detail(record))
    return "" if value is None else escape(str(value))


def _mode_line(run: dict[str, Any]) -> str:
    if run.get("dry_run"):
        return "dry run: effect nodes were simulated, nothing was changed"
    if run.get("dry_run") is False:
        return "live: effect nodes ran for real"
    return "unknown (the run's start was not received)"


def _effects_line(nodes: list[dict[str, Any]]) -> str:
    """How the run's effect attempts went: simulated, skipped as duplicates, done."""
    effects = [n for n in nodes if n.get("effect")]
    if not effects:
        return ""
    simulated = sum(1 for n in effects if n.get("simulated"))
    duplicate = sum(1 for n in effects if n.get("duplicate"))
    done = len(effects) - simulated - duplicate
    parts = [f"{simulated} simulated"] if simulated else []
    if duplicate:
        parts.append(f"{duplicate} skipped as a duplicate by the idempotency guard (done before)")
    if done:
        parts.append(f"{done} done")
    return f"{len(effects)} effect attempt{'s' if len(effects) != 1 else ''}: " + ", ".join(parts)


def _mode(dry_run: bool | None) -> str:
    """A run's mode: dry (effects simulated) or live."""
    from flowledger.receiver.store._views import RunMode

    if dry_run is None:
        return ""
    return f"[yellow]{RunMode.DRY}[/yellow]" if dry_run else RunMode.LIVE.value


def _when(ts: str | None) -> str:
    """A timestamp to the second, as ``2026-01-31 08:00:05`` (UTC); --json has it whole."""
    return "" if not ts else ts[:19].replace("T", " ")


def _detail(record: dict[str, Any]) -> str:
    """What a table says of a record without an error: why it was skipped or stuck, or what its effect did."""
    if record.get("stuck_reason"):
        return f"stuck: {record['stuck_reason']}"
    if record.get("skip_reason"):
        return str(record["skip_reason"])
    if record.get("duplicate"):
        return "effect skipped: a duplicate (the idempotency guard saw it done before)"
    if record.get("simulated"):
        return "effect simulated (dry run)"
    return ""


def _styled(status: str | None) -> str:
    if status is None:
        return ""
    style = _STATUS_STYLE.get(status)
    return f"[{style}]{status}[/{style}]" if style else status


def _duration(ms: float | None) -> str:
    if ms is None:
        return ""
    return f"{ms:.0f} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def _error_text(error: dict[str, Any] | None) -> str:
    if not error:
        return ""
    where = f" at {error['node_id']}" if error.get("node_id") else ""
    return f"{error.get('type')}: {error.get('message')}{where}"


def _search_text(text: str | None) -> str | None:
    from flowledger.receiver.store._search import fts_query

    if text is None:
        return None
    try:
        fts_query(text)
    except ValueError as exc:
        raise click.BadParameter(f"{text!r}: {exc}", param_hint="--search") from None
    return text


def _attributes(texts: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """The ``--attr KEY=VALUE`` filters, identical ones once; a usage error past ATTRIBUTE_FILTERS_MAX of them."""
    from flowledger.receiver.store._search import attribute_filters, attribute_filters_problem

    folded = attribute_filters(_attribute(text) for text in texts)
    problem = attribute_filters_problem(folded)
    if problem is not None:
        raise click.BadParameter(problem, param_hint="--attr")
    return folded


def _attribute(text: str) -> tuple[str, str]:
    from flowledger.receiver.store._search import attribute_problem

    key, sep, value = text.partition("=")
    problem = "is not KEY=VALUE" if not sep else attribute_problem(key, value)
    if problem is not None:
        raise click.BadParameter(f"{text[:60]!r} {problem}", param_hint="--attr")
    return key, value


@click.command("show")
@click.argument("run_id", type=RUN_ID)
@_json_option
@_db_option(None)
@_url_option
@_key_option
@_clean_errors
@click.option("--logs", "with_logs", is_flag=True, help="Also print each attempt's captured log lines, all of them.")
@click.option(
    "--project",
    type=RUN_PROJECT,
    default=None,
    help="The run of this project, when its id is used in several (runs are per project; an API key implies its own).",
)
def show_command(
    run_id: str,
    as_json: bool,
    db: Path | None,
    url: str | None,
    api_key: str | None,
    with_logs: bool,
    project: str | None,
) -> None:
    """Show one run with its node attempts (and, with --logs, what each attempt logged)."""
    source = _source(db, url, api_key)
    run = source.get_run(run_id, project)
    if run is None:
        _fail(f"there is no run {run_id!r}")
        return
    from flowledger.receiver._config import template_from_env
    from flowledger.receiver._trace_url import trace_url

    run["trace_url"] = trace_url(template_from_env(), run.get("trace_id"), run_id) or run.get("trace_url")
    public_error_types(run)
    if with_logs:
        for node in run["nodes"]:
            _complete_logs(source, run_id, node, run["project"])
    if as_json:
        _print_json(run)
        return
    from rich.markup import escape

    console = Terminal()
    console.print(f"[bold]{escape(str(run['workflow_name'] or run['workflow_id']))}[/bold]  run {run['run_id']}")
    console.print(
        f"status {_styled(run['status'])}  started {run['started_at']}  duration {_duration(run['duration_ms'])}"
    )
    console.print(f"mode   {_mode_line(run)}", markup=False)
    effects = _effects_line(run["nodes"])
    if effects:
        console.print(f"effect {effects}", markup=False)
    if run["error"]:
        console.print(f"error  {_error_text(run['error'])}", markup=False)
    if run.get("stuck_reason"):
        console.print(f"stuck  {run['stuck_reason']}", markup=False)
    if run["trace_url"]:
        console.print(f"trace  {run['trace_url']}", markup=False, soft_wrap=True)
    if run["cost"]:
        cost = run["cost"]
        console.print(
            f"cost   {cost['tokens']} tokens, {cost['tool_calls']} tool calls, "
            f"{cost['external_requests']} requests, ${cost['usd']:.4f}"
        )
        if cost.get("breakdown"):
            console.print(f"       {breakdown_text(cost['breakdown'])}", markup=False, soft_wrap=True)
    for line in context_lines(run):
        console.print(line, markup=False, soft_wrap=True)
    table = _table("nodes")
    columns = _table_fields(NODE_FIELDS)
    for field in columns:
        table.add_column(_header(field), **_column_style(field, console.width))
    for node in run["nodes"]:
        table.add_row(*(_cell(field, node) for field in columns))
    console.print(table)
    for line in node_record_lines(run["nodes"]):
        console.print(line, markup=False, soft_wrap=True)
    if with_logs:
        _print_logs(console, run["nodes"])


def _complete_logs(source: Source, run_id: str, node: dict[str, Any], project: str | None) -> None:
    """Fetch the rest of an attempt's lines when the run's detail only linked to them."""
    if not node.get("logs_url") or not node.get("logs"):
        return
    lines = list(node["logs"])
    while True:
        page = source.attempt_logs(run_id, node["span_id"], lines[-1]["id"], project)
        if page is None:
            break
        lines += page["logs"]
        if not page["more"] or not page["logs"]:
            break
    node["logs"] = lines
    node["logs_url"] = None


def _print_logs(console: Terminal, nodes: list[dict[str, Any]]) -> None:
    """Each attempt's lines under a heading naming the attempt; an attempt without lines is left out."""
    for node in nodes:
        lines = node.get("logs") or []
        dropped = node.get("logs_dropped")
        if not lines and not dropped:
            continue
        item = f" item {node['item']}" if node.get("item") is not None else ""
        console.print()
        console.print(f"logs of {node['node_id']} attempt {node['attempt']}{item}", markup=False, style="bold")
        for line in lines:
            repeats = f" (x{line['repeats']})" if line.get("repeats") else ""
            console.print(
                f"{line['ts']} {str(line['level']).upper():<8} {line['logger'] or ''}: {line['message']}{repeats}",
                multiline=True,  # a logged message may span lines
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
            if line.get("exception"):
                console.print(line["exception"], multiline=True, markup=False, highlight=False, soft_wrap=True)
        if dropped:
            console.print(
                f"... {dropped['lines']} more lines ({dropped['bytes']} bytes) dropped past the capture's caps",
                markup=False,
                highlight=False,
            )


@click.command("export")
@click.option(
    "--format",
    "fmt",
    type=click.Choice([f.value for f in ExportFormat]),
    required=True,
    help="csv: runs; jsonl: runs with nodes.",
)
@click.option("-o", "--output", type=OUTPUT_FILE, default=None, help="File to write [stdout].")
@click.option("--workflow", "workflow_id", type=WORKFLOW_ID, default=None, help="Only runs of this workflow id.")
@click.option("--status", "statuses", type=_STATUS_CHOICE, multiple=True, help="Only this status; may repeat.")
@context_options
@_db_option(None)
@_url_option
@_key_option
@_clean_errors
def export_command(
    fmt: str,
    output: Path | None,
    workflow_id: str | None,
    statuses: tuple[str, ...],
    db: Path | None,
    url: str | None,
    api_key: str | None,
    context: RunContextFilter,
) -> None:
    """Export runs as CSV or JSONL (JSONL: with their input, output and nodes), streamed (memory stays flat)."""
    from flowledger.receiver.store._protocol import RunQuery

    query = RunQuery(workflow_id=workflow_id, statuses=_run_statuses(statuses), context=context)
    chunks = _source(db, url, api_key).export(query, ExportFormat(fmt))  # the bytes of GET /api/export, as they are
    if output is None:
        sys.stdout.flush()
        for chunk in chunks:
            sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        return
    partial = output.with_name(output.name + ".partial")
    with partial.open("wb") as out:
        for chunk in chunks:
            out.write(chunk)
    partial.replace(output)


# --- verify / rebuild ----------------------------------------------------


@click.command("verify")
@_db_option(None)
@_url_option
@_key_option
@click.option(
    "--checkpoint",
    "checkpoints",
    multiple=True,
    metavar="SEQ:HASH|FILE",
    help="A head printed by an earlier verify (SEQ:HASH): the row SEQ must still have this hash; "
    "with --key, a signed checkpoint file: the ledger must extend it.",
)
@click.option(
    "--key",
    "key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The verifier key (FILE.pub) of the signed checkpoints given with --checkpoint.",
)
@_json_option
@_clean_errors
def verify_command(
    db: Path | None, url: str | None, api_key: str | None, checkpoints: tuple[str, ...], key: Path | None, as_json: bool
) -> None:
    """Check the ledger's hash chain (and signed checkpoints): exit 0 intact, exit 1 naming the first bad event.

    It reads --db, or --url, or $FLOWLEDGER_ENDPOINT, or else ./flowledger.db.
    """
    import dataclasses

    from flowledger.receiver.cli._sources import DbSource, UrlSource
    from flowledger.receiver.store._verify import parse_checkpoint

    if key is not None and not checkpoints:
        raise click.UsageError("--key checks signed checkpoints: give --checkpoint FILE too")
    try:
        parsed = [] if key is not None else [parse_checkpoint(c) for c in checkpoints]
    except ValueError as exc:
        raise click.BadParameter(
            f"{exc}; a signed checkpoint file needs --key FILE.pub", param_hint="--checkpoint"
        ) from None
    missing = [c for c in checkpoints if key is not None and not Path(c).is_file()]
    if missing:
        raise click.BadParameter(f"there is no checkpoint file at {missing[0]}", param_hint="--checkpoint")
    if db is not None and url is not None:
        raise click.UsageError("give --db or --url, not both")
    origin = "--url"
    if db is None:  # the same source as checkpoint, prove and the readers
        url, origin = _endpoint(url)
    local = db if db is not None else Path(DEFAULT_DB)
    source: Source = UrlSource(url, _checked_key(api_key), origin=origin) if url is not None else DbSource(local)
    report = source.verify(parsed)
    extended: dict[str, int] = {}
    if report.ok and key is not None:
        from flowledger.receiver.cli._checkpoints import check_against

        broken, extended = check_against(source, [Path(c) for c in checkpoints], key)
        if broken is not None:
            echo(broken, err=True)
            sys.exit(EXIT_BROKEN_CHAIN)
    if as_json:
        _print_json(dataclasses.asdict(report) | ({"signed_checkpoints_extended": extended} if key else {}))
    elif report.ok:
        echo(f"ledger intact: {report.events} events; head {report.head_seq}:{report.head_hash}")
        for path, size in extended.items():
            echo(f"extends the signed checkpoint {path} ({size} entries)")
        if report.purges:
            echo(
                f"erased by {report.purges} purge(s): the payloads of {report.payloads_erased} events "
                f"of {report.runs_purged} runs (their entries remain and verify)"
            )
    else:
        where = (
            f"event {report.first_bad_event_id} (row {report.first_bad_seq})"
            if report.first_bad_event_id is not None
            else f"row {report.first_bad_seq}"
        )
        echo(f"ledger BROKEN at {where}: {report.problem}", err=True)
    if not report.ok:
        sys.exit(EXIT_BROKEN_CHAIN)


@click.command("rebuild")
@_db_option(None)
@_url_option
@_key_option
@_json_option
@_clean_errors
def rebuild_command(db: Path | None, url: str | None, api_key: str | None, as_json: bool) -> None:
    """Drop and refold the projections from the ledger; report any drift found."""
    drift = _source(db, url, api_key).rebuild()
    if as_json:
        _print_json(drift.as_json())
        return
    echo(f"refolded {drift.events} events")
    if drift.clean:
        echo("no drift: the projections matched the ledger")
        return
    for label, ids in (
        ("runs changed", drift.runs_changed),
        ("runs missing from the projection", drift.runs_missing),
        ("runs not backed by the ledger", drift.runs_extra),
    ):
        if ids:
            shown = ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
            echo(f"drift: {len(ids)} {label}: {shown}")
    for label, count in (
        ("node attempts changed", drift.nodes_changed),
        ("node attempts missing from the projection", drift.nodes_missing),
        ("node attempts not backed by the ledger", drift.nodes_extra),
    ):
        if count:
            echo(f"drift: {count} {label}")


# --- import ----------------------------------------------------------------


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@_db_option(None)
@_url_option
@_key_option
@_json_option
@_clean_errors
def import_command(file: Path, db: Path | None, url: str | None, api_key: str | None, as_json: bool) -> None:
    """Load a JSONL file written by the SDK's jsonl sink, exactly once: exit 0, or 1 when a line was refused.

    Each event is stored once by its event_id, so importing a file again
    (or one that was partly imported) adds nothing twice.
    """
    from flowledger.receiver.cli._sources import DbSource, UrlSource

    api_key = _checked_key(api_key)
    if db is not None and url is not None:
        raise click.UsageError("give --db or --url, not both")
    origin = "--url"
    if db is None:
        url, origin = _endpoint(url)
    # Unlike the readers, an import with neither option writes ./flowledger.db, creating it if need be.
    local = db if db is not None else Path(DEFAULT_DB)
    source: Source = DbSource(local) if url is None else UrlSource(url, api_key, origin=origin)
    report = source.import_jsonl(file)
    if as_json:
        _print_json(report.as_json())
    else:
        echo(f"{file}: {report.accepted} accepted, {report.duplicates} duplicates, {len(report.rejected)} rejected")
        for item in report.rejected[:20]:
            echo(f"rejected line {item['line']}: {item['error']}", err=True)
        if len(report.rejected) > 20:
            echo(f"... and {len(report.rejected) - 20} more rejected lines", err=True)
    if report.rejected:
        sys.exit(EXIT_FAILURE)


COMMANDS: Final[list[click.Command]] = [
    serve_command,
    runs_command,
    show_command,
    export_command,
    verify_command,
    rebuild_command,
    import_command,
]
"""The receiver's commands, for ``flowledger.cli`` to add to its group."""
