"""The ``flowledger`` command.

Each part of flowledger contributes its commands: the receiver (``serve``,
``runs``, ``show``, ``export``, ``verify``, ``rebuild``, ``import``, and the
ledger lifecycle's ``purge``, ``keygen``, ``checkpoint``, ``prove``,
``verify-proof``), codegen (``validate``, ``generate``) and the workflow
runtime (``resume``). Registering them is cheap (each command
imports its heavy libraries when it runs), so every command is listed; a
command whose part's extra is not installed stops with one line naming the
missing package and the extra that brings it, never with a traceback.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Final

__all__ = ["main"]

_PARTS: Final = (
    ("flowledger.receiver.cli", "receiver"),
    ("flowledger.codegen._cli", "codegen"),
    ("flowledger.workflow._cli", "cli"),
)
EXIT_USAGE: Final = 2


def _command_name(argv: list[str]) -> str | None:
    """The subcommand named on the command line: the first word that is not an option."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def _build() -> tuple[Any, dict[str, str]]:
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

    extra_of: dict[str, str] = {}
    for module_name, extra in _PARTS:
        for command in importlib.import_module(module_name).COMMANDS:
            cli.add_command(command)
            extra_of[command.name] = extra
    return cli, extra_of


def main(argv: list[str] | None = None) -> None:
    """Run the ``flowledger`` command line."""
    try:
        cli, extra_of = _build()
    except KeyboardInterrupt:  # Ctrl-C while the commands' modules load: as a command says it, not a traceback
        sys.stderr.write("error: interrupted\n")
        raise SystemExit(1) from None
    args = sys.argv[1:] if argv is None else argv
    try:
        cli.main(args=args, prog_name="flowledger")
    except ModuleNotFoundError as exc:
        name = _command_name(args) or "flowledger"
        extra = extra_of.get(name, "all")
        package = (exc.name or "a package it needs").partition(".")[0]
        sys.stderr.write(
            f"flowledger {name}: {package} is not installed; "
            f"install the {extra} extra: pip install 'flowledger[{extra}]'\n"
        )
        raise SystemExit(EXIT_USAGE) from None


if __name__ == "__main__":
    main()
