"""``flowledger migrate --from URL --to URL``: copy a ledger between SQLite and PostgreSQL and prove the copy.

``--from sqlite:PATH --to postgresql://...`` moves a ledger to PostgreSQL; ``--from postgresql://... --to
sqlite:PATH`` brings one back into a new SQLite file (from one snapshot, receivers may keep appending).

Importing this module is cheap: the database drivers are imported when the command runs.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Final

import click

from flowledger.receiver.cli._commands import _clean_errors, _fail, _json_option, _print_json
from flowledger.receiver.cli._terminal import echo

if TYPE_CHECKING:
    from flowledger.receiver.store.postgres._copy import CopyReport

__all__ = ["COMMANDS", "sqlite_path"]

SQLITE_PREFIX: Final = "sqlite:"


def sqlite_path(text: str) -> Path:
    """The SQLite file of ``--from``: ``sqlite:PATH`` (``sqlite:///PATH`` too) or a plain path."""
    if text.startswith(SQLITE_PREFIX):
        text = text[len(SQLITE_PREFIX) :]
        if text.startswith("//"):
            text = text[2:]
    return Path(text)


async def _to_postgres(source: Path, target_url: str) -> CopyReport:
    from flowledger.receiver.store.postgres import PostgresStore
    from flowledger.receiver.store.postgres._copy import copy_sqlite_ledger

    target = PostgresStore(target_url, pool_min=1, pool_max=2)
    await target.open()
    try:
        return await copy_sqlite_ledger(source, target)
    finally:
        await target.close()


async def _to_sqlite(source_url: str, target: Path) -> CopyReport:
    from flowledger.receiver.store.postgres import PostgresStore
    from flowledger.receiver.store.postgres._copy import copy_postgres_ledger

    source = PostgresStore(source_url, pool_min=1, pool_max=2, readonly=True)
    await source.open()
    try:
        return await copy_postgres_ledger(source, target)
    finally:
        await source.close()


@click.command("migrate")
@click.option(
    "--from", "source", required=True, metavar="URL", help="The ledger to copy: sqlite:PATH or postgresql://..."
)
@click.option(
    "--to",
    "target",
    required=True,
    metavar="URL",
    help="Where: an empty PostgreSQL database (postgresql://...) or a new SQLite file (sqlite:PATH).",
)
@_json_option
@_clean_errors
def migrate_command(source: str, target: str, as_json: bool) -> None:
    """Copy a ledger between SQLite and PostgreSQL, rebuild its projections there, and verify both.

    Exit 0 when both chains verify with the same head and Merkle root; 1 otherwise.
    """
    from flowledger._exceptions import ConfigError
    from flowledger.receiver.store.postgres import check_postgres_url, is_postgres_url, redacted

    if is_postgres_url(source) == is_postgres_url(target):
        raise click.UsageError(
            "migrate copies between engines: one of --from and --to is a SQLite file (sqlite:PATH), "
            "the other a PostgreSQL URL (postgresql://...)"
        )
    to_postgres = is_postgres_url(target)
    try:
        url = check_postgres_url(target, option="--to") if to_postgres else check_postgres_url(source, option="--from")
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    given = source if to_postgres else target
    path = sqlite_path(given)
    if not str(path) or str(path) == "." or given.rstrip("/").endswith(":"):
        option = "--from" if to_postgres else "--to"
        raise click.UsageError(f"{option} {given}: name the SQLite file, as sqlite:PATH")
    if path.is_dir():
        raise click.UsageError(f"{'--from' if to_postgres else '--to'} {given}: {path} is a folder, not a SQLite file")
    if to_postgres and not path.exists():
        raise click.UsageError(f"--from {source}: there is no database at {path}")
    where = redacted(url) if to_postgres else str(path)
    report = asyncio.run(_to_postgres(path, url) if to_postgres else _to_sqlite(url, path))
    if as_json:
        _print_json(report.as_json())
    else:
        rows = report.rows
        echo(
            f"copied {rows['ledger']} entries ({rows['payloads']} payloads, {rows['blobs']} blobs, "
            f"{rows['merkle_nodes']} tree nodes) and {len(report.drift.runs_missing)} runs to {where}"
        )
        for name, verified, tree in (
            ("source", report.source, report.source_tree),
            ("target", report.target, report.target_tree),
        ):
            state = "ok" if verified.ok else f"BROKEN at {verified.first_bad_seq}: {verified.problem}"
            echo(f"{name}: {state}, head {verified.head_seq}:{verified.head_hash}, root {tree.root.hex()}")
    if not report.proven:
        _fail("the copy does not match its source (see above)")
    if not as_json:
        echo("proven: same head and Merkle root, both chains verify")


COMMANDS: Final[list[click.Command]] = [migrate_command]
"""``migrate``, for :mod:`._registry` to gather."""
