"""The codegen pipeline in two calls: :func:`load` and :func:`generate`."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path as FsPath

from flowledger.codegen._load import load_definition
from flowledger.codegen._model import Definition
from flowledger.codegen._render import render
from flowledger.codegen._validate import validate

__all__ = ["generate", "load", "recorded_path"]


def load(path: str | FsPath, *, display_name: str | None = None) -> Definition:
    """Read, parse and validate the definition at ``path``; DefinitionError lists every problem."""
    return validate(load_definition(path, display_name=display_name))


def generate(
    path: str | FsPath,
    *,
    templates_dir: str | FsPath | None = None,
    display_name: str | None = None,
    relative_to: str | FsPath | None = None,
) -> str:
    """The instrumented workflow module for the definition at ``path``, as source text.

    The module records where its definition is (``DEFINITION_FILE``, and the
    ``location`` of each node's records): ``display_name``, by default
    ``path`` as given; with ``relative_to`` (the generated module's folder),
    the path from that folder instead, so that the same checkout generates
    the same bytes on every machine and no absolute path is embedded.
    Problems always name the file as ``display_name`` or ``path`` does.
    """
    definition = load(path, display_name=display_name)
    if relative_to is not None:
        definition = dataclasses.replace(definition, source_file=recorded_path(path, relative_to))
    return render(definition, templates_dir=templates_dir)


def recorded_path(path: str | FsPath, folder: str | FsPath) -> str:
    """``path`` relative to ``folder``, with ``/`` separators; as given when none exists (another drive)."""
    try:
        relative = os.path.relpath(os.path.abspath(path), os.path.abspath(folder))
    except ValueError:
        return FsPath(path).as_posix()
    return FsPath(relative).as_posix()
