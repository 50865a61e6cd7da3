"""Every receiver command of the ``flowledger`` CLI.

The reading and serving commands (:mod:`._commands`) and the ledger-lifecycle ones (:mod:`._lifecycle`).
"""

from __future__ import annotations

from typing import Final

import click

from flowledger.receiver.cli import _commands, _diff_command, _lifecycle

__all__ = ["COMMANDS"]

COMMANDS: Final[list[click.Command]] = [*_commands.COMMANDS, *_lifecycle.COMMANDS, *_diff_command.COMMANDS]
