"""The receiver's commands of the ``flowledger`` CLI, reading a database file (``--db``) or a receiver (``--url``).

Importing this package is cheap: the server, the database driver and rich load inside the commands.
"""

from __future__ import annotations

from flowledger.receiver.cli._registry import COMMANDS

__all__ = ["COMMANDS"]
