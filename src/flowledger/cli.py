"""The ``flowledger`` command.

Each part of flowledger contributes its commands: the receiver (``serve``,
``runs``, ``show``, ``export``, ``verify``, ``rebuild``, ``purge``) and codegen
(``validate``, ``generate``). A part whose extra is not installed is left
out, and ``flowledger --help`` names the extra that brings it.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Final

__all__ = ["main"]

_PARTS: Final = (
    ("flowledger.receiver.cli._commands", "receiver"),
    ("flowledger.receiver.cli._lifecycle", "receiver"),
    ("flowledger.codegen._cli", "codegen"),
)


def _build() -> Any:
    try:
        import click
    except ImportError:
        sys.stderr.write("flowledger: the command line needs its extra: pip install 'flowledger[cli]'\n")
        raise SystemExit(2) from None

    from flowledger._version import __version__

    @click.group(context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(__version__, prog_name="flowledger")
    def cli() -> None:
        """flowledger: workflow runs that report on themselves."""

    absent: list[str] = []
    for module_name, extra in _PARTS:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            absent.append(f"the {extra} commands need {exc.name or 'a dependency'}: pip install 'flowledger[{extra}]'")
            continue
        for command in getattr(module, "COMMANDS", []):
            cli.add_command(command)
    if absent:
        cli.epilog = "Not installed: " + "; ".join(absent) + "."
    return cli


def main(argv: list[str] | None = None) -> None:
    """Run the ``flowledger`` command line."""
    cli = _build()
    cli.main(args=argv, prog_name="flowledger")


if __name__ == "__main__":
    main()
