"""The receiver's layout: one folder per stage and packages that only re-export (imports: tests/test_layering.py)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import flowledger.receiver

RECEIVER = Path(flowledger.receiver.__file__).parent
STAGES = ("ingest", "store", "otlp", "api", "viewer", "cli")
PUBLIC = {
    "ingest": ["Batch", "decode_batch"],
    "store": ["Drift", "EventOutcome", "RunPage", "RunQuery", "SqliteStore", "Stats", "Store", "VerifyReport"],
    "otlp": ["Forwarder", "OtlpFormat", "SpanBatch", "decode_request", "spans_from_request"],
    "api": ["openapi_document"],
    "viewer": ["CONTENT_SECURITY_POLICY", "STATIC_FILES", "SummaryCache"],
    "cli": ["COMMANDS"],
}


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_exports_its_curated_names(stage: str) -> None:
    """A stage package's __all__ is exactly its public names, each importable."""
    package = importlib.import_module(f"flowledger.receiver.{stage}")
    assert sorted(package.__all__) == PUBLIC[stage]
    for name in package.__all__:
        assert getattr(package, name) is not None


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_package_only_re_exports(stage: str) -> None:
    """A stage's __init__.py holds a docstring, imports and __all__ (plus the lazy-import hook), no code."""
    tree = ast.parse((RECEIVER / stage / "__init__.py").read_text("utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Expr | ast.Import | ast.ImportFrom | ast.If):
            continue
        if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
            assert {t.id for t in node.targets if isinstance(t, ast.Name)} <= {"__all__", "_WHERE"}
            continue
        assert isinstance(node, ast.FunctionDef), ast.dump(node)[:80]
        assert node.name == "__getattr__"


def test_static_files_ship_in_the_viewer_package() -> None:
    """The viewer's page and files sit in viewer/static/, beside the routes that serve them."""
    names = {p.name for p in (RECEIVER / "viewer" / "static").iterdir()}
    assert {"index.html", "app.js", "page.js", "dom.js", "app.css", "favicon.svg"} <= names
