"""The public surface: what ``import flowledger`` offers and what it does not pull in."""

from __future__ import annotations

import subprocess
import sys

import flowledger
import flowledger.instrument


def test_all_lists_exactly_the_public_names() -> None:
    """flowledger.__all__ is the public API, and every listed name exists."""
    public = {name for name in dir(flowledger) if not name.startswith("_")} - {
        "instrument",
        "testing",
        "cli",
        "codegen",
        "receiver",
        "schemas",
        "workflow",
        "annotations",
    }
    assert set(flowledger.__all__) - {"__version__"} == public
    for name in flowledger.instrument.__all__:
        assert hasattr(flowledger.instrument, name)


def test_contract_api_is_present() -> None:
    """run, node, cost, flush, configure, shutdown and stats exist as the contract names them."""
    for name in ("run", "node", "cost", "flush", "configure", "shutdown", "stats"):
        assert callable(getattr(flowledger, name))


def test_importing_the_sdk_does_not_import_the_receiver_stack() -> None:
    """A workflow that imports flowledger does not load the server, codegen or CLI libraries."""
    code = (
        "import sys, flowledger\n"
        "heavy = ('starlette', 'uvicorn', 'aiosqlite', 'jinja2', 'ruamel', 'click', 'rich', 'fastjsonschema')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
