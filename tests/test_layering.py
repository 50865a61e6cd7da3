"""Layering, checked by import-linter against the contracts in pyproject.toml.

The contracts say: no import circles between sibling modules or packages at
any depth (imports inside functions and ``TYPE_CHECKING`` blocks count);
``instrument`` imports neither ``workflow``, ``codegen`` nor ``receiver``;
``workflow`` builds on ``instrument`` only; ``codegen`` and ``receiver`` are
independent; the receiver imports nothing of the SDK; the receiver's stages
talk through ``store``, not through each other's routes.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def test_every_layering_contract_is_kept() -> None:
    """lint-imports finds every contract of pyproject.toml kept."""
    done = _lint()
    assert done.returncode == 0, done.stdout + done.stderr
    assert ", 0 broken." in done.stdout


def test_every_receiver_stage_but_the_store_is_in_the_independence_contract() -> None:
    """Every receiver stage folder but store (the CLI too) is one of the stages that meet only in the store."""
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["tool"]["importlinter"]["contracts"]
    (independent,) = [c for c in contracts if c["name"].startswith("the receiver's serving stages meet in the store")]
    receiver = ROOT / "src" / "flowledger" / "receiver"
    stages = {p.name for p in receiver.iterdir() if (p / "__init__.py").is_file()} - {"store"}
    assert set(independent["modules"]) == {f"flowledger.receiver.{stage}" for stage in stages}


def test_a_circle_hidden_in_a_function_breaks_the_contracts(tmp_path: Path) -> None:
    """A contract file holding a circle made through a function-level import is reported broken."""
    package = tmp_path / "circled"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from circled import b\n")
    (package / "b.py").write_text("def late() -> None:\n    from circled import a  # noqa: F401\n")
    config = tmp_path / "contracts.toml"
    config.write_text(
        '[tool.importlinter]\nroot_package = "circled"\n\n'
        '[[tool.importlinter.contracts]]\nname = "no circles"\ntype = "acyclic_siblings"\nancestors = ["circled"]\n'
    )
    done = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PYTHONPATH": str(tmp_path), "PATH": ""},
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "BROKEN" in done.stdout
