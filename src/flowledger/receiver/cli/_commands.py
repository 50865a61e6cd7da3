"""The receiver's commands of the ``flowledger`` CLI: serve, runs, show, export, verify, rebuild.

``flowledger.cli`` mounts :data:`COMMANDS`. Importing this module is cheap:
the server, the database driver and rich are imported inside the commands.
Every error is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, ParamSpec, TypeVar

import click

from flowledger._wire import NodeStatus, RunStatus
from flowledger.receiver.api._export import ExportFormat
from flowledger.receiver.store._records import NODE_FIELDS, RUN_FIELDS, RecordField

if TYPE_CHECKING:
    from flowledger.receiver.cli._sources import Source

__all__ = ["COMMANDS"]

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_DB: Final = "./flowledger.db"
DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 4318
"""The OTLP/HTTP port."""
DEFAULT_URL: Final = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
EXIT_FAILURE: Final = 1
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


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_FAILURE)


def _clean_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn every expected failure into one line on stderr and exit 1."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from flowledger._exceptions import FlowledgerError

        try:
            return command(*args, **kwargs)
        except FlowledgerError as exc:
            _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        except OSError as exc:
            _fail(f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
        except KeyboardInterrupt:
            _fail("interrupted")
        raise AssertionError("unreachable")  # pragma: no cover

    return wrapper


def _db_option(default: str | None) -> Callable[[Callable[P, R]], Callable[P, R]]:
    return click.option(
        "--db",
        "db",
        type=click.Path(dir_okay=False, path_type=Path),
        default=default,
        show_default=default is not None,
        help="Read this database file directly.",
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


def _source(db: Path | None, url: str | None, api_key: str | None) -> Source:
    from flowledger.receiver.cli._sources import DbSource, UrlSource

    if db is not None and url is not None:
        raise click.UsageError("give --db or --url, not both")
    if db is not None:
        return DbSource(db)
    if url is None:
        url = os.environ.get("FLOWLEDGER_ENDPOINT")
    if url is None:
        local = Path(DEFAULT_DB)
        return DbSource(local) if local.exists() else UrlSource(DEFAULT_URL, api_key)
    return UrlSource(url, api_key)


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2))


# --- serve ---------------------------------------------------------------


@click.command("serve")
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_DB,
    show_default=True,
    help="The SQLite database (created when missing).",
)
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Interface to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True, help="The OTLP/HTTP port."
)
@click.option(
    "--api-keys",
    "api_keys",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help='TOML file with a [keys] table of "token" = "project" [env FLOWLEDGER_RECEIVER_API_KEYS].',
)
@click.option(
    "--stuck-after-s", type=click.FloatRange(min=0, min_open=True), default=None, help="Mark runs stuck after this."
)
@click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info", show_default=True
)
@_clean_errors
def serve_command(
    db: Path, host: str, port: int, api_keys: Path | None, stuck_after_s: float | None, log_level: str
) -> None:
    """Run the receiver: ingest at /v1/events, queries at /api/runs."""
    from dataclasses import replace

    from flowledger.receiver._auth import keys_from_env, load_keys_file
    from flowledger.receiver._config import ReceiverConfig, config_from_env
    from flowledger.receiver._server import serve
    from flowledger.receiver.store._sqlite import prepare_file

    config = config_from_env(ReceiverConfig(db_path=db))
    keys = keys_from_env(os.environ.get("FLOWLEDGER_RECEIVER_API_KEYS"))
    if api_keys is not None:
        keys.update(load_keys_file(api_keys))
    config = replace(config, api_keys=keys)
    if stuck_after_s is not None:
        config = replace(config, stuck_after_s=stuck_after_s)
    prepare_file(db)  # a bad --db is one error line here, not a failed app startup
    click.echo(f"flowledger receiver on http://{host}:{port} with {db}" + (" (API keys on)" if keys else ""), err=True)
    serve(config, host=host, port=port, log_level=log_level)


# --- runs / show / export ------------------------------------------------


@click.command("runs")
@click.option("--workflow", "workflow_id", default=None, help="Only runs of this workflow id.")
@click.option(
    "--status",
    type=_STATUS_CHOICE,
    default=None,
    help="Only runs with this status.",
)
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True)
@_json_option
@_db_option(None)
@_url_option
@_key_option
@_clean_errors
def runs_command(
    workflow_id: str | None,
    status: str | None,
    limit: int,
    offset: int,
    as_json: bool,
    db: Path | None,
    url: str | None,
    api_key: str | None,
) -> None:
    """List runs, newest first."""
    from flowledger.receiver.store._protocol import RunQuery

    query = RunQuery(workflow_id=workflow_id, status=RunStatus(status) if status else None, limit=limit, offset=offset)
    page = _source(db, url, api_key).list_runs(query)
    if as_json:
        _print_json({"runs": page.runs, "total": page.total})
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(page.runs)} of {page.total} runs", title_justify="left")
    columns = _table_fields(RUN_FIELDS)
    for field in columns:
        table.add_column(_header(field), overflow="fold")
    for run in page.runs:
        table.add_row(*(_cell(field, run) for field in columns))
    Console().print(table)


def _table_fields(fields: tuple[RecordField, ...]) -> list[RecordField]:
    """The fields a CLI table shows, in the order of their columns."""
    return sorted((f for f in fields if f.table is not None), key=lambda f: f.table[0] if f.table else 0)


def _header(field: RecordField) -> str:
    return field.table[1] if field.table else field.name


def _cell(field: RecordField, record: dict[str, Any]) -> str:
    """One cell of a CLI table: a field of a run or a node attempt as text."""
    value = record.get(field.name)
    if field.name == "status":
        return _styled(value)
    if field.name == "duration_ms":
        return _duration(value)
    if field.name == "error":
        return _error_text(value) or record.get("skip_reason") or ""
    return "" if value is None else str(value)


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


@click.command("show")
@click.argument("run_id")
@_json_option
@_db_option(None)
@_url_option
@_key_option
@_clean_errors
def show_command(run_id: str, as_json: bool, db: Path | None, url: str | None, api_key: str | None) -> None:
    """Show one run with its node attempts."""
    run = _source(db, url, api_key).get_run(run_id)
    if run is None:
        _fail(f"there is no run {run_id!r}")
        return
    from flowledger.receiver._config import template_from_env
    from flowledger.receiver._trace_url import trace_url

    run["trace_url"] = trace_url(template_from_env(), run.get("trace_id"), run_id) or run.get("trace_url")
    if as_json:
        _print_json(run)
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{run['workflow_name'] or run['workflow_id']}[/bold]  run {run['run_id']}")
    console.print(
        f"status {_styled(run['status'])}  started {run['started_at']}  duration {_duration(run['duration_ms'])}"
    )
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
    table = Table(title="nodes", title_justify="left")
    columns = _table_fields(NODE_FIELDS)
    for field in columns:
        table.add_column(_header(field), overflow="fold")
    for node in run["nodes"]:
        table.add_row(*(_cell(field, node) for field in columns))
    console.print(table)


@click.command("export")
@click.option(
    "--format",
    "fmt",
    type=click.Choice([f.value for f in ExportFormat]),
    required=True,
    help="csv: runs; jsonl: runs with nodes.",
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None, help="File to write [stdout]."
)
@click.option("--workflow", "workflow_id", default=None, help="Only runs of this workflow id.")
@click.option("--status", type=_STATUS_CHOICE, default=None)
@_db_option(None)
@_url_option
@_key_option
@_clean_errors
def export_command(
    fmt: str,
    output: Path | None,
    workflow_id: str | None,
    status: str | None,
    db: Path | None,
    url: str | None,
    api_key: str | None,
) -> None:
    """Export runs as CSV or JSONL, streamed (memory stays flat however many runs there are)."""
    from flowledger.receiver.store._protocol import RunQuery

    query = RunQuery(workflow_id=workflow_id, status=RunStatus(status) if status else None)
    lines = _source(db, url, api_key).export(query, ExportFormat(fmt))
    if output is None:
        for line in lines:
            sys.stdout.write(line)
        sys.stdout.flush()
        return
    partial = output.with_name(output.name + ".partial")
    with partial.open("w", encoding="utf-8", newline="") as out:
        for line in lines:
            out.write(line)
    partial.replace(output)


# --- verify / rebuild ----------------------------------------------------


@click.command("verify")
@_db_option(DEFAULT_DB)
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
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The verifier key (FILE.pub) of the signed checkpoints given with --checkpoint.",
)
@_json_option
@_clean_errors
def verify_command(
    db: Path, url: str | None, api_key: str | None, checkpoints: tuple[str, ...], key: Path | None, as_json: bool
) -> None:
    """Check the ledger's hash chain (and signed checkpoints): exit 0 intact, exit 1 naming the first bad event."""
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
    source: Source = UrlSource(url, api_key) if url is not None else DbSource(db)
    report = source.verify(parsed)
    if report.ok and key is not None:
        from flowledger.receiver.cli._checkpoints import check_against

        broken = check_against(source, [Path(c) for c in checkpoints], key)
        if broken is not None:
            click.echo(broken, err=True)
            sys.exit(EXIT_BROKEN_CHAIN)
    if as_json:
        _print_json(dataclasses.asdict(report))
    elif report.ok:
        click.echo(f"ledger intact: {report.events} events; head {report.head_seq}:{report.head_hash}")
        if report.purges:
            click.echo(
                f"erased by {report.purges} purge(s): the payloads of {report.payloads_erased} events "
                f"of {report.runs_purged} runs (their entries remain and verify)"
            )
    else:
        where = f"event {report.first_bad_event_id} (row {report.first_bad_seq})"
        click.echo(f"ledger BROKEN at {where}: {report.problem}", err=True)
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
    click.echo(f"refolded {drift.events} events")
    if drift.clean:
        click.echo("no drift: the projections matched the ledger")
        return
    for label, ids in (
        ("runs changed", drift.runs_changed),
        ("runs missing from the projection", drift.runs_missing),
        ("runs not backed by the ledger", drift.runs_extra),
    ):
        if ids:
            shown = ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
            click.echo(f"drift: {len(ids)} {label}: {shown}")
    for label, count in (
        ("node attempts changed", drift.nodes_changed),
        ("node attempts missing from the projection", drift.nodes_missing),
        ("node attempts not backed by the ledger", drift.nodes_extra),
    ):
        if count:
            click.echo(f"drift: {count} {label}")


COMMANDS: Final[list[click.Command]] = [
    serve_command,
    runs_command,
    show_command,
    export_command,
    verify_command,
    rebuild_command,
]
"""The receiver's commands, for ``flowledger.cli`` to add to its group."""
