"""``flowledger validate`` and ``flowledger generate``.

Importing this module is cheap: Jinja and PyYAML are imported when a
command runs. A bad definition exits with code 2 and every problem on
stderr, one per line; no command ever shows a traceback.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, ParamSpec, TypeVar

import click

from flowledger._exceptions import DefinitionError
from flowledger._files import write_text_atomically
from flowledger.codegen import _generate

__all__ = ["COMMANDS", "EXIT_INVALID", "generate_command", "validate_command"]

EXIT_INVALID: Final = 2
EXIT_IO: Final = 1
FILE_MODE: Final = 0o666

P = ParamSpec("P")
R = TypeVar("R")


def _no_traceback(command: Callable[P, R]) -> Callable[P, R]:
    """Turn an unexpected exception into one line on stderr and exit 1 (a bug to report, not a traceback)."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (SystemExit, KeyboardInterrupt, click.exceptions.Exit, click.ClickException, ModuleNotFoundError):
            raise  # a missing package is named, with its extra, by the ``flowledger`` command
        except Exception as exc:
            click.echo(f"error: unexpected {type(exc).__name__}: {exc} (please report this)", err=True)
            raise SystemExit(EXIT_IO) from None

    return wrapper


def _same_file(definition: Path, output: Path) -> bool:
    """Whether writing ``output`` would overwrite ``definition``: the same path once resolved (symbolic links,
    ``..``), or another name of the same file (a hard link)."""
    try:
        if definition.resolve() == output.resolve():
            return True
        return output.exists() and os.path.samefile(definition, output)
    except OSError:  # one of them cannot be read: generating reports it
        return False


_JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON (for scripts).")


def _print_json(value: dict[str, Any]) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2))


def _report(error: DefinitionError, definition: Path, *, as_json: bool, after: str) -> None:
    """Every problem: one per line on stderr, or ``{"valid": false, "problems": [...]}`` on stdout."""
    if as_json:
        _print_json({"valid": False, "definition": str(definition), "problems": error.details})
        return
    for problem in error.problems:
        click.echo(problem, err=True)
    count = len(error.problems)
    click.echo(f"{count} problem{'s' if count != 1 else ''} found{after}.", err=True)


@click.command("validate")
@click.argument("definition", type=click.Path(dir_okay=False, path_type=Path))
@_JSON_OPTION
@_no_traceback
def validate_command(definition: Path, as_json: bool) -> None:
    """Check the workflow DEFINITION (YAML or JSON); exit 2 listing every problem."""
    try:
        model = _generate.load(definition)
    except DefinitionError as exc:
        _report(exc, definition, as_json=as_json, after="")
        raise SystemExit(EXIT_INVALID) from None
    count = len(model.nodes)
    if as_json:
        _print_json({"valid": True, "definition": str(definition), "workflow_id": model.workflow.id, "nodes": count})
        return
    click.echo(f"{definition}: valid (workflow {model.workflow.id}, {count} node{'s' if count != 1 else ''})")


@click.command("generate")
@click.argument("definition", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-o", "--output", "output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="module to write"
)
@click.option(
    "--templates",
    "templates_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="directory whose templates override the packaged ones (e.g. workflow.py.jinja)",
)
@_JSON_OPTION
@_no_traceback
def generate_command(definition: Path, output: Path, templates_dir: Path | None, as_json: bool) -> None:
    """Validate DEFINITION and write its instrumented workflow module to OUTPUT (`-` for stdout)."""
    if templates_dir is not None and not templates_dir.is_dir():
        click.echo(f"error: --templates {templates_dir} is not a directory", err=True)
        raise SystemExit(EXIT_INVALID)
    if as_json and str(output) == "-":
        click.echo("error: --json prints the outcome on stdout; write the module to a file with -o FILE", err=True)
        raise SystemExit(EXIT_INVALID)
    if str(output) != "-" and _same_file(definition, output):
        suggestion = definition.with_suffix(".py") if definition.suffix != ".py" else definition.with_name("module.py")
        click.echo(
            f"error: -o {output} is the definition {definition} itself; write the module to another file, "
            f"e.g. -o {suggestion}",
            err=True,
        )
        raise SystemExit(EXIT_INVALID)
    # The module records its definition's path from its own folder (from here when it goes to stdout).
    folder = Path.cwd() if str(output) == "-" else output.parent
    try:
        source = _generate.generate(definition, templates_dir=templates_dir, relative_to=folder)
    except DefinitionError as exc:
        _report(exc, definition, as_json=as_json, after="; nothing was generated")
        raise SystemExit(EXIT_INVALID) from None
    if str(output) == "-":
        click.echo(source, nl=False)
        return
    try:
        umask = os.umask(0)
        os.umask(umask)
        write_text_atomically(output, source, mode=FILE_MODE & ~umask)  # a module is as readable as any file
    except OSError as exc:
        click.echo(f"error: cannot write {output}: {exc.strerror or exc}", err=True)
        raise SystemExit(EXIT_IO) from None
    if as_json:
        digest = hashlib.sha256(source.encode("utf-8")).hexdigest()
        model = _generate.load(definition)  # read again (it was valid a moment ago) for what validate prints
        outcome = {"valid": True, "definition": str(definition), "workflow_id": model.workflow.id}
        _print_json({**outcome, "nodes": len(model.nodes), "output": str(output), "sha256": digest})
        return
    click.echo(f"wrote {output} from {definition}")


COMMANDS: Final[list[click.Command]] = [validate_command, generate_command]
"""The codegen commands, for the ``flowledger`` command group to register."""
