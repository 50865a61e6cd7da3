"""The ledger-lifecycle commands of the ``flowledger`` CLI: purge (and the checkpoint commands).

``flowledger.cli`` mounts :data:`COMMANDS`. Like :mod:`._commands`, importing
this module is cheap: the database driver and the server stay unimported
until a command needs them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import click

from flowledger.receiver.cli._commands import (
    _clean_errors,
    _db_option,
    _json_option,
    _key_option,
    _print_json,
    _source,
    _url_option,
)

__all__ = ["COMMANDS"]


def _before(value: str | None) -> str | None:
    if value is None:
        return None
    from flowledger.receiver.store._time import normalize_ts

    try:
        return normalize_ts(value)
    except ValueError as exc:
        raise click.BadParameter(
            f"{value!r} is not an RFC 3339 time with an offset ({exc})", param_hint="--before"
        ) from None


@click.command("purge")
@click.option("--run", "run_ids", multiple=True, metavar="ID", help="Purge this run (repeatable).")
@click.option("--workflow", "workflow_id", default=None, metavar="ID", help="Purge this workflow's runs.")
@click.option(
    "--before", default=None, metavar="TIME", help="With --workflow: only runs started before TIME (RFC 3339)."
)
@_db_option(None)
@_url_option
@_key_option
@_json_option
@_clean_errors
def purge_command(
    run_ids: tuple[str, ...],
    workflow_id: str | None,
    before: str | None,
    db: Path | None,
    url: str | None,
    api_key: str | None,
    as_json: bool,
) -> None:
    """Erase runs' payloads, projection rows and spans; the purge is recorded in the ledger and verify still passes."""
    from flowledger.receiver.store._protocol import PurgeSelection

    if bool(run_ids) == (workflow_id is not None):
        raise click.UsageError("give --run ID (one or more) or --workflow ID, not both and not neither")
    if before is not None and workflow_id is None:
        raise click.UsageError("--before goes with --workflow")
    selection = PurgeSelection(run_ids=run_ids, workflow_id=workflow_id, before=_before(before), by="cli")
    report = _source(db, url, api_key).purge(selection)
    if as_json:
        _print_json(report.as_json())
        return
    if not report.runs:
        click.echo("nothing to purge: no run matched")
        return
    click.echo(
        f"purged {len(report.runs)} runs ({report.events} ledger entries lost their payload); "
        f"recorded as ledger entry {report.purge_seq}"
    )


COMMANDS: Final[list[click.Command]] = [purge_command]
"""The lifecycle commands, for ``flowledger.cli`` to add to its group."""
