"""``flowledger resume RUN_ID --module OUT.py``: resume a run of a generated workflow from the command line.

The module is imported from its file (importing a generated module has no
side effects; its folder goes first on ``sys.path`` so that the node
functions it names import as they do when it runs as a script), and its
``WORKFLOW`` is resumed exactly as ``python OUT.py --resume RUN_ID`` would.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final

import click

if TYPE_CHECKING:  # the runtime is imported when the command runs: registering it stays cheap
    from flowledger.workflow._spec import Workflow

__all__ = ["COMMANDS"]

_MODULE_NAME: Final = "_flowledger_resumed_module"


def load_workflow(path: Path) -> Workflow:
    """The ``WORKFLOW`` of the generated module at ``path``; click.UsageError when it has none."""
    from flowledger.workflow._spec import Workflow

    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(_MODULE_NAME, path)
    if spec is None or spec.loader is None:
        raise click.UsageError(f"--module {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise click.UsageError(f"--module {path}: importing it failed: {type(exc).__name__}: {exc}") from None
    workflow = getattr(module, "WORKFLOW", None)
    if not isinstance(workflow, Workflow):
        raise click.UsageError(f"--module {path}: not a module made by `flowledger generate` (it has no WORKFLOW)")
    return workflow


@click.command("resume")
@click.argument("run_id")
@click.option(
    "--module",
    "module_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The module `flowledger generate` made for the run's workflow.",
)
@click.option("--from", "from_node", metavar="NODE", help="Run this node and those below it again too.")
@click.option("--repeat-effects", is_flag=True, help="Run effects again even when they succeeded on the same input.")
@click.option("--input", "input_json", metavar="JSON", help="Use this trigger payload instead of the recorded one.")
@click.option("--url", "url", default=None, help="The receiver to read the run from [default: $FLOWLEDGER_ENDPOINT].")
@click.option(
    "--project", default=None, help="The run of this project, when its id is used in several (runs are per project)."
)
def resume_command(
    run_id: str,
    module_path: Path,
    from_node: str | None,
    repeat_effects: bool,
    input_json: str | None,
    url: str | None,
    project: str | None,
) -> None:
    """Resume a failed run: reuse what succeeded (checked against the ledger), run the rest onward."""
    from flowledger.workflow._triggers import EXIT_USAGE, main

    workflow = load_workflow(module_path)
    argv = ["--resume", run_id]
    if from_node is not None:
        argv += ["--from", from_node]
    if repeat_effects:
        argv.append("--repeat-effects")
    if input_json is not None:
        argv += ["--input", input_json]
    if url is not None:
        argv += ["--endpoint", url]
    if project is not None:
        argv += ["--project", project]
    try:
        code = main(workflow, argv, prog="flowledger resume")
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code if isinstance(exc.code, int) else EXIT_USAGE
    sys.exit(code)


COMMANDS: Final[list[click.Command]] = [resume_command]
