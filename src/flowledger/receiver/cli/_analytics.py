"""The analytics commands of the ``flowledger`` CLI: ``errors`` (error groups), ``stats`` and ``metrics``
(custom metrics added up).

Both read ``--db PATH`` directly or a running receiver at ``--url``, like ``runs``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, ParamSpec, TypeVar

import click

from flowledger.receiver._error_names import public_error_type
from flowledger.receiver._params import label_filters
from flowledger.receiver.cli._api_params import LABEL, METRIC_NAME, NODE_ID, WORKFLOW_ID
from flowledger.receiver.cli._commands import (
    _clean_errors,
    _db_option,
    _duration,
    _json_option,
    _key_option,
    _print_json,
    _source,
    _table,
    _url_option,
    _when,
)
from flowledger.receiver.cli._context_options import parse_time
from flowledger.receiver.cli._terminal import Terminal, TerminalTable

__all__ = ["COMMANDS", "KEY_MIN_WIDTH", "time_range"]

P = ParamSpec("P")
R = TypeVar("R")

_MAX_LIMIT: Final = 1000


def _time_option(name: str, help_text: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    return click.option(f"--{name}", name, default=None, metavar="TIME", help=help_text)


def time_range(since: str | None, until: str | None) -> tuple[str | None, str | None]:
    """``--since`` and ``--until`` normalised, the first before the second."""
    start, end = parse_time(since, "--since"), parse_time(until, "--until", before=True)
    if start is not None and end is not None and start >= end:
        raise click.BadParameter("must be later than --since", param_hint="--until")
    return start, end


@click.command("errors")
@click.option("--workflow", "workflow_id", type=WORKFLOW_ID, default=None, help="Only errors of this workflow id.")
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
    Terminal().print(table)


_BY_CHOICE: Final = click.Choice(["workflow", "agent", "project", "node"])
_BUCKET_CHOICE: Final = click.Choice(["hour", "day"])


@click.command("stats")
@click.option("--by", "by", type=_BY_CHOICE, default="workflow", show_default=True, help="Group runs by this.")
@_time_option("since", "Only runs started from the UTC hour holding this time on (RFC 3339).")
@_time_option("until", "Only runs started in UTC hours starting before this time (RFC 3339).")
@click.option("--bucket", type=_BUCKET_CHOICE, default=None, help="Add a time series (--json) in these buckets.")
@click.option("--limit", type=click.IntRange(1, _MAX_LIMIT), default=100, show_default=True)
@_json_option
@_db_option(None)
@_url_option
@_key_option
@_clean_errors
def stats_command(
    by: str,
    since: str | None,
    until: str | None,
    bucket: str | None,
    limit: int,
    as_json: bool,
    db: Path | None,
    url: str | None,
    api_key: str | None,
) -> None:
    """Statistics per workflow, agent, project or node: runs by status, success rate, cost, duration."""
    from flowledger.receiver.store._stats import Bucket, StatsBy, StatsQuery

    start, end = time_range(since, until)
    query = StatsQuery(
        by=StatsBy(by), since=start, until=end, bucket=None if bucket is None else Bucket(bucket), limit=limit
    )
    groups = _source(db, url, api_key).run_stats(query)
    if as_json:
        _print_json({"groups": groups})
        return
    console = Terminal()
    console.print(_stats_table(f"{len(groups)} {by}s, most runs first", groups, console.width))


_STATS_COLUMNS: Final = ("runs", "failed", "success", "cost total", "cost avg", "avg", "p50", "p95")
"""The figures of a ``stats`` row, after its key."""
_STACKED_COLUMNS: Final = (("runs",), ("failed",), ("success",), ("cost total", "cost avg"), ("avg", "p50", "p95"))
"""The figures' columns when a row does not fit on the terminal: the costs share one, a value a line, and so do
the durations."""
KEY_MIN_WIDTH: Final = 16
"""The narrowest the key column of ``stats`` gets (a longer key folds, a line at a time)."""


def _stats_figures(group: dict[str, Any]) -> dict[str, str]:
    cost, duration = group["cost_usd"], group["duration_ms"]
    rate = group["success_rate"]
    return {
        "runs": str(group["runs"]),
        "failed": str(sum(n for status, n in group["by_status"].items() if status in ("failed", "aborted"))),
        "success": "" if rate is None else f"{rate:.1%}",
        "cost total": _usd(cost["total"]),
        "cost avg": _usd(cost["avg"]),
        "avg": _duration(duration["avg"]),
        "p50": _duration(duration["p50"]),
        "p95": _duration(duration["p95"]),
    }


def _stats_table(title: str, groups: list[dict[str, Any]], console_width: int) -> TerminalTable:
    """The ``stats`` table: the key, then every figure whole. When the figures and the key (down to KEY_MIN_WIDTH)
    do not fit on one line of the terminal, the costs share a column and so do the durations, a value a line; the
    key folds rather than leave the table."""
    from rich.markup import escape

    keys = [group["key"] or "(none)" for group in groups]
    figures = [_stats_figures(group) for group in groups]
    key_width = max(len("key"), min(max(map(len, keys), default=0), KEY_MIN_WIDTH))
    widths = {name: max([len(name)] + [len(row[name]) for row in figures]) for name in _STATS_COLUMNS}
    one_line = key_width + sum(widths.values()) + len(_STATS_COLUMNS) <= console_width  # a space between columns
    columns = [(name,) for name in _STATS_COLUMNS] if one_line else list(_STACKED_COLUMNS)
    table = _table(title)
    table.add_column("key", overflow="fold", min_width=key_width)
    for names in columns:
        header = names[0] if len(names) == 1 else ("cost total/avg" if names[0] == "cost total" else "/".join(names))
        table.add_column(header, justify="right", no_wrap=True)
    for key, row in zip(keys, figures, strict=True):
        table.add_row(escape(key), *("\n".join(row[name] for name in names) for names in columns))
    return table


def _usd(value: float | None) -> str:
    return "" if value is None else f"${value:,.4f}"


@click.command("metrics")
@click.option("--name", type=METRIC_NAME, default=None, help="Only this metric.")
@click.option("--workflow", "workflow_id", type=WORKFLOW_ID, default=None, help="Only metrics of this workflow id.")
@click.option("--node", "node_id", type=NODE_ID, default=None, help="Only metrics of this node id.")
@click.option(
    "--label", "labels", type=LABEL, multiple=True, metavar="NAME=VALUE", help="Only series with this label (repeat)."
)
@_time_option("since", "Only the UTC hours from the one holding this time on (RFC 3339).")
@_time_option("until", "Only UTC hours starting before this time (RFC 3339).")
@click.option("--limit", type=click.IntRange(1, _MAX_LIMIT), default=100, show_default=True)
@_json_option
@_db_option(None)
@_url_option
@_key_option
@_clean_errors
def metrics_command(
    name: str | None,
    workflow_id: str | None,
    node_id: str | None,
    labels: tuple[str, ...],
    since: str | None,
    until: str | None,
    limit: int,
    as_json: bool,
    db: Path | None,
    url: str | None,
    api_key: str | None,
) -> None:
    """Custom metrics (flowledger.metric) added up per workflow, node, name, labels and UTC hour, newest first."""
    from flowledger.receiver.store._custom_metrics import CustomMetricQuery

    start, end = time_range(since, until)
    try:
        wanted = label_filters(labels)  # the API's rule: at most 20 names; one name twice matches no row
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--label") from None
    query = CustomMetricQuery(
        name=name,
        workflow_id=workflow_id,
        node_id=node_id,
        since=start,
        until=end,
        labels=wanted,
        limit=limit,
    )
    rows = [] if wanted is None else _source(db, url, api_key).custom_metrics(query)
    if as_json:
        _print_json({"metrics": rows})
        return
    from rich.markup import escape

    table = _table(f"{len(rows)} rows (a metric and labels in an hour), newest hour first")
    for column in ("hour", "where", "metric", "count", "sum", "avg", "min", "max"):
        numeric = column in ("count", "sum", "avg", "min", "max")
        table.add_column(column, **({"justify": "right", "no_wrap": True} if numeric else {"overflow": "fold"}))
    for row in rows:
        labelled = ",".join(f"{k}={v}" for k, v in sorted(row["labels"].items()))
        table.add_row(
            _when(row["hour"]),
            escape(f"{row['workflow_id']} / {row['node_id']}"),
            escape(row["name"] + (f"{{{labelled}}}" if labelled else "")),
            *(f"{row[column]:g}" for column in ("count", "sum", "avg", "min", "max")),
        )
    Terminal().print(table)


COMMANDS: Final[list[click.Command]] = [errors_command, stats_command, metrics_command]
"""The analytics commands, for the registry."""
