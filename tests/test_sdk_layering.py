"""Layering of the SDK side: instrument, workflow, codegen, read from the source's import statements.

Every import is counted, at module level, inside ``if TYPE_CHECKING:`` and
inside functions alike: an import circle hidden in a function is still a
circle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "flowledger"
SDK = ("flowledger.instrument", "flowledger.workflow", "flowledger.codegen", "flowledger.testing")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


MODULES = _modules()


def _imports(name: str, path: Path) -> Iterator[str]:
    """The flowledger modules ``name`` imports (a name imported from a package counts as its submodule if one)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("flowledger"):
                    yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if not target.startswith("flowledger"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield sub if sub in MODULES else target


def _graph() -> dict[str, set[str]]:
    return {name: {t for t in _imports(name, path) if t in MODULES} - {name} for name, path in MODULES.items()}


GRAPH = _graph()


def _in(name: str, layer: str) -> bool:
    return name == layer or name.startswith(layer + ".")


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        ("flowledger.instrument", ("flowledger.receiver", "flowledger.codegen", "flowledger.workflow")),
        ("flowledger.workflow", ("flowledger.receiver", "flowledger.codegen")),
        ("flowledger.codegen", ("flowledger.receiver",)),
        ("flowledger.testing", ("flowledger.receiver", "flowledger.codegen", "flowledger.workflow")),
    ],
)
def test_a_layer_imports_only_what_lies_below_it(layer: str, forbidden: tuple[str, ...]) -> None:
    """instrument imports neither workflow, codegen nor receiver; workflow builds on instrument only."""
    wrong = sorted(
        f"{name} imports {target}"
        for name, targets in GRAPH.items()
        if _in(name, layer)
        for target in targets
        if any(_in(target, f) for f in forbidden)
    )
    assert wrong == []


def test_the_sdk_has_no_import_circles() -> None:
    """No module of instrument, workflow, codegen or testing reaches itself again through its imports."""
    sdk = {name for name in GRAPH if any(_in(name, layer) for layer in SDK)} | {
        "flowledger",
        "flowledger._exceptions",
        "flowledger._wire",
        "flowledger._version",
    }
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for target in sorted(GRAPH[name] & sdk):
            if state.get(target) == 1:
                circles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[name] = 2

    for name in sorted(sdk):
        if name not in state:
            visit(name)
    assert [" -> ".join(c) for c in circles] == []


def test_the_layering_check_sees_imports_inside_functions() -> None:
    """The graph holds the lazy imports too (the pipeline starts the delivery stage's sender lazily)."""
    assert "flowledger.instrument.delivery._sender" in GRAPH["flowledger.instrument._pipeline"]
