"""Loading the adapters' examples (examples/adapters/*.py) as modules, for the tests that run them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Final

EXAMPLES: Final = Path(__file__).resolve().parents[2] / "examples" / "adapters"


def load_example(name: str) -> ModuleType:
    """Import ``examples/adapters/NAME.py`` under a private module name (once)."""
    module_name = f"_flowledger_example_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
