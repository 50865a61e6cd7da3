"""Generated modules: golden files, determinism, lint and types, template overrides, the hooks check."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from flowledger import DefinitionError
from flowledger._version import __version__
from flowledger.codegen import GenerationError, generate, load
from flowledger.codegen._render import check_module

GOLDEN = Path(__file__).parent / "golden"
DEFINITIONS = sorted([*GOLDEN.glob("*.yaml"), *GOLDEN.glob("*.json")])
ROOT = Path(__file__).resolve().parents[2]


def _packaged_template() -> str:
    return resources.files("flowledger").joinpath("templates", "workflow.py.jinja").read_text(encoding="utf-8")


@pytest.mark.parametrize("definition", DEFINITIONS, ids=[d.name for d in DEFINITIONS])
def test_generated_module_matches_its_golden_file(definition: Path) -> None:
    """Each golden definition generates exactly its checked-in module (regenerate: scripts/regenerate_golden.py)."""
    expected = definition.with_suffix(".py").read_text(encoding="utf-8")
    assert generate(definition, display_name=definition.name) == expected


def test_generation_is_deterministic_across_runs_and_locations(tmp_path: Path) -> None:
    """The same definition bytes and display name give byte-identical output, wherever the file lives."""
    source = GOLDEN / "manual.yaml"
    copy = tmp_path / "elsewhere" / "manual.yaml"
    copy.parent.mkdir()
    shutil.copy(source, copy)
    first = generate(source, display_name="manual.yaml")
    assert generate(source, display_name="manual.yaml") == first
    assert generate(copy, display_name="manual.yaml") == first


def test_header_names_the_generator_version_and_definition_sha256() -> None:
    """The module header carries the generator version and the sha256 of the definition's bytes."""
    import hashlib

    definition = GOLDEN / "schedule.yaml"
    text = generate(definition, display_name=definition.name)
    sha = hashlib.sha256(definition.read_bytes()).hexdigest()
    assert f"# flowledger-generator: {__version__}\n# definition-sha256: {sha}\n" in text
    assert f'DEFINITION_SHA256 = "{sha}"' in text


def test_golden_modules_are_ruff_clean() -> None:
    """The generated modules pass ruff check and ruff format --check with the project's settings."""
    files = [str(d.with_suffix(".py")) for d in DEFINITIONS]
    for args in (["check", "--no-cache"], ["format", "--check", "--no-cache"]):
        done = subprocess.run(
            [sys.executable, "-m", "ruff", *args, *files], cwd=ROOT, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_golden_modules_are_mypy_strict_clean(tmp_path: Path) -> None:
    """The generated modules type-check under mypy --strict against the package."""
    files = [str(d.with_suffix(".py")) for d in DEFINITIONS]
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\nstrict = True\npython_version = 3.11\n")
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(config), "--cache-dir", str(tmp_path / "cache"), *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "MYPYPATH": str(ROOT / "src")},
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_packaged_template_is_named_after_its_output() -> None:
    """The template ships inside the package as workflow.py.jinja."""
    assert "fw.Workflow(" in _packaged_template()


def _override(tmp_path: Path, text: str) -> Path:
    directory = tmp_path / "templates"
    directory.mkdir(exist_ok=True)
    (directory / "workflow.py.jinja").write_text(text, encoding="utf-8")
    return directory


def test_templates_dir_overrides_the_packaged_template(tmp_path: Path) -> None:
    """A workflow.py.jinja in --templates DIR is used instead of the packaged one."""
    custom = _packaged_template().replace(
        "from __future__ import annotations\n", "from __future__ import annotations\n\n# house style\n"
    )
    directory = _override(tmp_path, custom)
    text = generate(GOLDEN / "schedule.yaml", templates_dir=directory, display_name="schedule.yaml")
    assert "# house style" in text


def test_template_printing_a_raw_string_is_refused(tmp_path: Path) -> None:
    """A template that prints a definition string without a literal filter fails to render, naming the filters."""
    custom = _packaged_template().replace("# flowledger-generator:", "# {{ workflow.name }}\n# flowledger-generator:")
    with pytest.raises(GenerationError) as info:
        generate(GOLDEN / "manual.yaml", templates_dir=_override(tmp_path, custom))
    assert "printed str 'Order intake' directly; pass values through the `py` or `arg` filter" in str(info.value)


def test_template_dropping_a_node_is_refused(tmp_path: Path) -> None:
    """Output where a node no longer goes through fw.Node is refused by the check after generation."""
    custom = _packaged_template().replace("{% for node in nodes %}", "{% for node in nodes[1:] %}")
    with pytest.raises(GenerationError) as info:
        generate(GOLDEN / "manual.yaml", templates_dir=_override(tmp_path, custom))
    assert "declares node `fetch` 0 times through fw.Node" in str(info.value)


def test_template_bypassing_the_runtime_is_refused(tmp_path: Path) -> None:
    """A `run` that does not hand WORKFLOW to fw.execute is refused."""
    custom = _packaged_template().replace(
        "return await fw.execute(WORKFLOW, payload, dry_run=dry_run)", "return payload"
    )
    with pytest.raises(GenerationError) as info:
        generate(GOLDEN / "manual.yaml", templates_dir=_override(tmp_path, custom))
    assert "does not call `fw.execute(WORKFLOW, ...)`" in str(info.value)


def test_template_syntax_errors_are_reported(tmp_path: Path) -> None:
    """A broken user template is one clear problem naming it and the line."""
    with pytest.raises(GenerationError) as info:
        generate(GOLDEN / "manual.yaml", templates_dir=_override(tmp_path, "{% for x in %}\n"))
    assert "template syntax error" in str(info.value)


def test_output_that_is_not_python_is_refused() -> None:
    """The check parses the output first; a syntax error is refused, not written."""
    definition = load(GOLDEN / "schedule.yaml")
    with pytest.raises(GenerationError) as info:
        check_module("def broken(:\n", definition)
    assert "is not valid Python" in str(info.value)


def test_generation_error_is_a_definition_error() -> None:
    """Callers that handle DefinitionError also handle generation problems."""
    assert issubclass(GenerationError, DefinitionError)


def test_generated_module_parses_to_plain_declarations() -> None:
    """The module's top level is imports, constants, WORKFLOW, run, and the __main__ guard: nothing runs on import."""
    tree = ast.parse(generate(GOLDEN / "http_api.json"))
    kinds = [type(stmt).__name__ for stmt in tree.body]
    assert kinds == [
        "Expr",
        "ImportFrom",
        "Import",
        "ImportFrom",
        "ImportFrom",
        "ImportFrom",
        "Assign",
        "Assign",
        "Assign",
        "Assign",
        "AsyncFunctionDef",
        "Assign",
        "Expr",
        "If",
    ]


def test_importing_a_generated_module_starts_nothing(tmp_path: Path) -> None:
    """Importing a generated module starts no thread and imports neither node code, httpx nor starlette."""
    module = tmp_path / "generated_http.py"
    module.write_text(generate(GOLDEN / "http_api.json"))
    code = (
        "import importlib.util, sys, threading\n"
        f"spec = importlib.util.spec_from_file_location('generated_http', {str(module)!r})\n"
        "mod = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(mod)\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & {'quotes', 'httpx', 'starlette', 'uvicorn'})\n"
        "print(threading.active_count(), loaded, callable(mod.app))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "1 [] True"
