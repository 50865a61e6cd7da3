"""Every receiver command of the ``flowledger`` CLI.

The reading and serving commands (:mod:`._commands`), the ledger-lifecycle ones (:mod:`._lifecycle`)
and the integrity checks (:mod:`._integrity`), the analytics ones (:mod:`._analytics`) and ``migrate``
(:mod:`._migrate`).
"""

from __future__ import annotations

from typing import Final

import click

from flowledger.receiver.cli import _analytics, _commands, _diff_command, _integrity, _lifecycle, _migrate

__all__ = ["COMMANDS"]

COMMANDS: Final[list[click.Command]] = [
    *_commands.COMMANDS,
    *_lifecycle.COMMANDS,
    *_integrity.COMMANDS,
    *_diff_command.COMMANDS,
    *_analytics.COMMANDS,
    *_migrate.COMMANDS,
]
