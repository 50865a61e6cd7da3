"""The codegen pipeline in two calls: :func:`load` and :func:`generate`."""

from __future__ import annotations

from pathlib import Path as FsPath

from flowledger.codegen._load import load_definition
from flowledger.codegen._model import Definition
from flowledger.codegen._render import render
from flowledger.codegen._validate import validate

__all__ = ["generate", "load"]


def load(path: str | FsPath, *, display_name: str | None = None) -> Definition:
    """Read, parse and validate the definition at ``path``; DefinitionError lists every problem."""
    return validate(load_definition(path, display_name=display_name))


def generate(path: str | FsPath, *, templates_dir: str | FsPath | None = None, display_name: str | None = None) -> str:
    """The instrumented workflow module for the definition at ``path``, as source text."""
    return render(load(path, display_name=display_name), templates_dir=templates_dir)
