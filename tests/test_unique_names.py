"""A name the package exports means one thing: no two modules define the same exported name."""

from __future__ import annotations

import ast
import collections
from pathlib import Path

import flowledger

PACKAGE = Path(flowledger.__file__).parent
# Names that are a convention every module of a kind follows, each module its own instance of it.
CONVENTIONS = {
    "COMMANDS": "the click commands a part adds to the `flowledger` command",
    "ROUTES": "the routes of one receiver stage",
    "instrument": "each adapter's entry point",
    "recorder": "each adapter's recorder accessor",
    "main": "a command line's entry point",
}
# Known duplicates still to be given a name of their own.
KNOWN: dict[str, str] = {}


def _exported_definitions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text("utf-8"))
    exported: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            assert isinstance(node.value, ast.List | ast.Tuple)
            exported = {e.value for e in node.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
    defined: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            defined.add(node.name)
        elif isinstance(node, ast.Assign):
            defined |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            defined.add(node.target.id)
    return (defined & exported) - {"__all__"}


def test_no_two_modules_define_the_same_exported_name() -> None:
    """Each exported class, function or constant is defined in one module (conventions and known cases aside)."""
    where: dict[str, list[str]] = collections.defaultdict(list)
    for path in sorted(PACKAGE.rglob("*.py")):
        for name in _exported_definitions(path):
            where[name].append(path.relative_to(PACKAGE).as_posix())
    twice = {name: modules for name, modules in where.items() if len(modules) > 1}
    assert set(twice) - set(CONVENTIONS) - set(KNOWN) == set(), twice
    assert set(KNOWN) <= set(twice), "a known duplicate is gone: remove it from KNOWN"
