"""The analytics commands of the ``flowledger`` CLI: ``errors`` (error groups).

Both read ``--db PATH`` directly or a running receiver at ``--url``, like ``runs``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Final, ParamSpec, TypeVar

import click

from flowledger.receiver._error_names import public_error_type
from flowledger.receiver.cli._commands import (
    _clean_errors,
    _db_option,
    _json_option,
    _key_option,
    _print_json,
    _source,
    _table,
    _url_option,
    _when,
)

__all__ = ["COMMANDS", "parse_time", "time_range"]

P = ParamSpec("P")
R = TypeVar("R")

_MAX_LIMIT: Final = 1000


def _time_option(name: str, help_text: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    return click.option(f"--{name}", name, default=None, metavar="TIME", help=help_text)


def parse_time(value: str | None, option: str) -> str | None:
    """An RFC 3339 time with an offset, normalised; a usage error naming ``option`` otherwise."""
    if value is None:
        return None
    from flowledger.receiver.store._time import normalize_ts

    try:
        return normalize_ts(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an RFC 3339 time with an offset, like 2026-01-31T08:00:00Z", param_hint=option
        ) from None


def time_range(since: str | None, until: str | None) -> tuple[str | None, str | None]:
    """``--since`` and ``--until`` normalised, the first before the second."""
    start, end = parse_time(since, "--since"), parse_time(until, "--until")
    if start is not None and end is not None and start >= end:
        raise click.BadParameter("must be later than --since", param_hint="--until")
    return start, end


@click.command("errors")
@click.option("--workflow", "workflow_id", default=None, help="Only errors of this workflow id.")
@_time_option("since", "Only failures from the UTC hour holding this time on (RFC 3339).")
@_time_option("until", "Only failures in UTC hours starting before this time (RFC 3339).")
@click.option("--limit", type=click.IntRange(1, _MAX_LIMIT), default=20, show_default=True)
@_json_option
@_db_option(None)
@_url_option
@_key_option
@_clean_errors
def errors_command(
    workflow_id: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    as_json: bool,
    db: Path | None,
    url: str | None,
    api_key: str | None,
) -> None:
    """Error groups, biggest first: identical failures counted once each."""
    from flowledger.receiver.store._error_groups import ErrorGroupQuery

    start, end = time_range(since, until)
    query = ErrorGroupQuery(workflow_id=workflow_id, since=start, until=end, limit=limit)
    groups = _source(db, url, api_key).error_groups(query)
    for group in groups:
        group["type"] = public_error_type(group["type"])
    if as_json:
        _print_json({"groups": groups})
        return
    from rich.console import Console
    from rich.markup import escape

    table = _table(f"{len(groups)} error groups, biggest first")
    for name, style in (
        ("count", {"justify": "right", "no_wrap": True}),
        ("error", {"overflow": "fold"}),
        ("where", {"overflow": "fold"}),
        ("last seen", {"no_wrap": True}),
        ("fingerprint", {"no_wrap": True}),
    ):
        table.add_column(name, **style)
    for group in groups:
        where = (group["workflow_id"] or "") + (f" / {group['node_id']}" if group["node_id"] else "")
        table.add_row(
            str(group["count"]),
            escape(f"{group['type']}: {group['message']}"),
            escape(where),
            _when(group["last_seen"]),
            group["fingerprint"],
        )
    Console().print(table)


COMMANDS: Final[list[click.Command]] = [errors_command]
"""The analytics commands, for the registry."""
