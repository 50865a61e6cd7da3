"""docs/adapters.md: its example adapter runs as written and proves what it claims."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "adapters.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_the_write_your_own_adapter_example_runs() -> None:
    """The toy runtime and its Recorder-based adapter from the doc run, and its own assertions hold."""
    (example,) = [block for block in _blocks() if "class FlowledgerListener" in block]
    namespace: dict[str, object] = {"__name__": "adapters_doc_example"}
    exec(compile(example, str(DOC), "exec"), namespace)
    assert "runtime" in namespace


def test_the_doc_names_only_public_adapter_entry_points() -> None:
    """Every `from flowledger.adapters... import ...` in the doc names something that module exports."""
    import importlib

    for module_name, names in re.findall(r"from (flowledger\.adapters[\w.]*) import ([\w, ]+)", DOC.read_text()):
        module = importlib.import_module(module_name)
        for name in (n.strip() for n in names.split(",")):
            assert name in module.__all__, (module_name, name)
