"""Every receiver command of the ``flowledger`` CLI.

The reading and serving commands (:mod:`._commands`), the ledger-lifecycle ones (:mod:`._lifecycle`)
and the integrity checks (:mod:`._integrity`).
"""

from __future__ import annotations

from typing import Final

import click

from flowledger.receiver.cli import _commands, _diff_command, _integrity, _lifecycle

__all__ = ["COMMANDS"]

COMMANDS: Final[list[click.Command]] = [
    *_commands.COMMANDS,
    *_lifecycle.COMMANDS,
    *_integrity.COMMANDS,
    *_diff_command.COMMANDS,
]
