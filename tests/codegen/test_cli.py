"""`flowledger validate` and `flowledger generate` through click's test runner."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from flowledger.codegen._cli import COMMANDS, generate_command, validate_command

GOLDEN = Path(__file__).parent / "golden"
BAD = "flowledger: 1\nworkflow: {id: BAD}\nnodes:\n  - {id: a, call: nope}\n"


def test_commands_are_exported_for_the_cli_group() -> None:
    """The module hands the lead's click group exactly `validate` and `generate`."""
    assert [c.name for c in COMMANDS] == ["validate", "generate"]


def test_validate_accepts_a_good_definition() -> None:
    """A valid definition exits 0 with a one-line summary."""
    result = CliRunner().invoke(validate_command, [str(GOLDEN / "manual.yaml")])
    assert result.exit_code == 0
    assert result.output.endswith(": valid (workflow order-intake, 5 nodes)\n")


def test_validate_lists_every_problem_and_exits_2(tmp_path: Path) -> None:
    """A bad definition exits 2 with each problem on its own stderr line and no traceback."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    result = CliRunner().invoke(validate_command, [str(bad)])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"{bad}:2:16: workflow.id: 'BAD' is not a workflow id")
    assert lines[1].startswith(f"{bad}:4:19: nodes[0].call: 'nope' is not an import path")
    assert lines[2] == "2 problems found."
    assert "Traceback" not in result.output


def test_validate_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    """A path that does not exist is exit 2 with a sentence, not a traceback."""
    result = CliRunner().invoke(validate_command, [str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "cannot read the file" in result.stderr


def test_generate_writes_the_module(tmp_path: Path) -> None:
    """generate writes a parseable module and says where."""
    out = tmp_path / "wf.py"
    result = CliRunner().invoke(generate_command, [str(GOLDEN / "schedule.yaml"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    ast.parse(out.read_text())
    assert f"wrote {out}" in result.output


def test_generate_to_stdout(tmp_path: Path) -> None:
    """`-o -` prints the module instead of writing a file."""
    result = CliRunner().invoke(generate_command, [str(GOLDEN / "schedule.yaml"), "-o", "-"])
    assert result.exit_code == 0
    assert "WORKFLOW = fw.Workflow(" in result.output


def test_generate_refuses_a_bad_definition_and_writes_nothing(tmp_path: Path) -> None:
    """An invalid definition exits 2, lists its problems, and leaves no output file."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    out = tmp_path / "wf.py"
    result = CliRunner().invoke(generate_command, [str(bad), "-o", str(out)])
    assert result.exit_code == 2
    assert "2 problems found; nothing was generated." in result.stderr
    assert not out.exists()


def test_generate_with_templates_dir(tmp_path: Path) -> None:
    """--templates DIR overrides the packaged template; a missing DIR is exit 2."""
    from importlib import resources

    directory = tmp_path / "tpl"
    directory.mkdir()
    packaged = resources.files("flowledger").joinpath("templates", "workflow.py.jinja").read_text()
    (directory / "workflow.py.jinja").write_text(packaged.replace("import sys\n", "import sys  # custom\n"))
    out = tmp_path / "wf.py"
    result = CliRunner().invoke(
        generate_command, [str(GOLDEN / "schedule.yaml"), "-o", str(out), "--templates", str(directory)]
    )
    assert result.exit_code == 0, result.output
    assert "import sys  # custom" in out.read_text()
    missing = CliRunner().invoke(
        generate_command, [str(GOLDEN / "schedule.yaml"), "-o", str(out), "--templates", str(tmp_path / "none")]
    )
    assert missing.exit_code == 2
    assert "is not a directory" in missing.stderr


def test_generate_unwritable_output_is_a_clear_error(tmp_path: Path) -> None:
    """A target in a folder that does not exist is exit 1 with one line."""
    result = CliRunner().invoke(generate_command, [str(GOLDEN / "schedule.yaml"), "-o", str(tmp_path / "no" / "x.py")])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot write")


def test_importing_the_cli_module_is_cheap() -> None:
    """Importing the commands does not import jinja2 or PyYAML."""
    import subprocess
    import sys

    code = "import sys, flowledger.codegen._cli; print(any(m.startswith(('jinja2', 'yaml')) for m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_unexpected_errors_are_one_line_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug inside the generator surfaces as one stderr line and exit 1, never a traceback."""
    from flowledger.codegen import _generate

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(_generate, "load", broken)
    result = CliRunner().invoke(validate_command, [str(GOLDEN / "manual.yaml")])
    assert result.exit_code == 1
    assert result.stderr == "error: unexpected RuntimeError: simulated bug (please report this)\n"


def test_generated_file_gets_ordinary_permissions(tmp_path: Path) -> None:
    """The written module is readable like any file the user creates (umask applied), not private."""
    import os
    import stat

    out = tmp_path / "wf.py"
    CliRunner().invoke(generate_command, [str(GOLDEN / "schedule.yaml"), "-o", str(out)])
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask


def _generate_in(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    return subprocess.run(
        [sys.executable, "-m", "flowledger", "generate", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_generated_module_embeds_no_absolute_path_and_is_the_same_on_every_machine(tmp_path: Path) -> None:
    """From absolute paths in two checkouts: byte-identical modules naming the definition relatively."""
    modules = []
    for checkout in ("alice", "bob-elsewhere"):
        root = tmp_path / checkout
        (root / "defs").mkdir(parents=True)
        (root / "build").mkdir()
        definition = root / "defs" / "manual.yaml"
        definition.write_bytes((GOLDEN / "manual.yaml").read_bytes())
        done = _generate_in(tmp_path, str(definition), "-o", str(root / "build" / "wf.py"))
        assert done.returncode == 0, done.stderr
        modules.append((root / "build" / "wf.py").read_text())
    assert modules[0] == modules[1]
    assert 'DEFINITION_FILE = "../defs/manual.yaml"' in modules[0]
    assert str(tmp_path) not in modules[0]


def test_generated_module_to_stdout_names_the_definition_from_the_current_folder(tmp_path: Path) -> None:
    """`-o -` with an absolute definition path records it relative to the folder the command runs in."""
    (tmp_path / "defs").mkdir()
    definition = tmp_path / "defs" / "manual.yaml"
    definition.write_bytes((GOLDEN / "manual.yaml").read_bytes())
    done = _generate_in(tmp_path, str(definition), "-o", "-")
    assert done.returncode == 0, done.stderr
    assert 'DEFINITION_FILE = "defs/manual.yaml"' in done.stdout
    assert str(tmp_path) not in done.stdout


def test_validate_json_gives_the_workflow_or_every_problem_with_its_place(tmp_path: Path) -> None:
    """--json: the outcome on stdout, each problem as file, line, column, path and message; exit 0 or 2 as without."""
    good = CliRunner().invoke(validate_command, [str(GOLDEN / "manual.yaml"), "--json"])
    assert good.exit_code == 0, good.output
    assert json.loads(good.stdout) == {
        "valid": True,
        "definition": str(GOLDEN / "manual.yaml"),
        "workflow_id": "order-intake",
        "nodes": 5,
    }
    bad = tmp_path / "bad.yaml"
    bad.write_text("flowledger: 1\nworkflow: {id: wf}\nnodes:\n  - {id: Bad, call: 'm:f', needs: [zz]}\n")
    result = CliRunner().invoke(validate_command, [str(bad), "--json"])
    assert result.exit_code == 2
    answer = json.loads(result.stdout)
    assert answer["valid"] is False
    assert [(p["line"], p["column"], p["path"]) for p in answer["problems"]] == [
        (4, 10, "nodes[0].id"),
        (4, 36, "nodes[0].needs[0]"),
    ]
    assert answer["problems"][1]["message"].startswith("unknown node `zz`")
    assert {p["file"] for p in answer["problems"]} == {str(bad)}


def test_generate_json_names_the_module_written_and_its_hash(tmp_path: Path) -> None:
    """--json: what validate --json says, where the module went and the SHA-256 of its text; a bad definition is
    the problems, exit 2."""
    out = tmp_path / "oi.py"
    result = CliRunner().invoke(generate_command, [str(GOLDEN / "manual.yaml"), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["output"] == str(out)
    assert answer["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    validated = json.loads(CliRunner().invoke(validate_command, [str(GOLDEN / "manual.yaml"), "--json"]).stdout)
    assert answer == {**validated, "output": str(out), "sha256": answer["sha256"]}  # what validate says, and more
    bad = tmp_path / "bad.yaml"
    bad.write_text("flowledger: 1\nworkflow: {id: wf}\nnodes: []\n")
    refused = CliRunner().invoke(generate_command, [str(bad), "-o", str(tmp_path / "x.py"), "--json"])
    assert refused.exit_code == 2
    assert json.loads(refused.stdout)["problems"][0]["path"] == "nodes"
    assert not (tmp_path / "x.py").exists()
    to_stdout = CliRunner().invoke(generate_command, [str(GOLDEN / "manual.yaml"), "-o", "-", "--json"])
    assert to_stdout.exit_code == 2


def test_generate_with_a_template_that_raises_names_its_file_and_line(tmp_path: Path) -> None:
    """A user template raising while it renders is one line naming its file, line and error, and exit 2."""
    directory = tmp_path / "tpl"
    directory.mkdir()
    (directory / "workflow.py.jinja").write_text('{% include "part.jinja" %}\n', encoding="utf-8")
    (directory / "part.jinja").write_text("# header\n{{ 1/0 }}\n", encoding="utf-8")
    out = tmp_path / "wf.py"
    result = CliRunner().invoke(
        generate_command, [str(GOLDEN / "schedule.yaml"), "-o", str(out), "--templates", str(directory)]
    )
    assert result.exit_code == 2, result.output
    part = (directory / "part.jinja").resolve()
    assert result.stderr.splitlines() == [
        f"{part}:2: rendering the template failed: ZeroDivisionError: division by zero",
        "1 problem found; nothing was generated.",
    ]
    assert not out.exists()
