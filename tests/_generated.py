"""Fixtures shared by the codegen and workflow tests: definition files, generated modules built in-process, events.

The ``conftest.py`` of ``tests/codegen`` and ``tests/workflow`` import them.
"""

from __future__ import annotations

import itertools
import sys
import textwrap
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flowledger.testing import CapturedEvents, capture_events

ROOT = Path(__file__).resolve().parents[1]
"""The repository root (``tests.workflow.nodes`` imports from here)."""

_counter = itertools.count()


@pytest.fixture
def events() -> Iterator[CapturedEvents]:
    """Events emitted during the test, captured in memory (not sent)."""
    with capture_events() as captured:
        yield captured


@pytest.fixture
def write_definition(tmp_path: Path) -> Callable[..., Path]:
    """``write_definition(text, name="wf.yaml")``: a definition file in the test's temp dir."""

    def write(text: str, name: str = "wf.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


@pytest.fixture
def build(write_definition: Callable[..., Path], tmp_path: Path) -> Callable[..., types.ModuleType]:
    """``build(yaml_text)``: generate the module for a definition and import it in-process."""
    from flowledger.codegen import generate

    def make(text: str, name: str = "wf.yaml") -> types.ModuleType:
        path = write_definition(text, name)
        source = generate(path, display_name=name)
        module_name = f"_flowledger_generated_{next(_counter)}"
        target = tmp_path / f"{module_name}.py"
        target.write_text(source, encoding="utf-8")
        module = types.ModuleType(module_name)
        module.__file__ = str(target)
        sys.modules[module_name] = module
        exec(compile(source, str(target), "exec"), module.__dict__)
        return module

    return make
