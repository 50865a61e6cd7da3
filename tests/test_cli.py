"""The ``flowledger`` command: every part's commands are listed, and a missing extra is named, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from flowledger import cli


def _flowledger_without(modules: list[str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the command in a process where importing ``modules`` fails, as when their extra is not installed."""
    code = (
        "import sys\n"
        f"for name in {modules!r}:\n"
        "    sys.modules[name] = None\n"
        "from flowledger.cli import main\n"
        f"main({list(args)!r})\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False, cwd=cwd
    )


def test_every_part_lists_its_commands() -> None:
    """--help lists the receiver's and codegen's commands."""
    group, extra_of = cli._build()
    result = CliRunner().invoke(group, ["--help"])
    assert result.exit_code == 0
    for name in ("serve", "runs", "show", "export", "verify", "rebuild", "validate", "generate"):
        assert name in result.output
    assert extra_of["serve"] == "receiver"
    assert extra_of["generate"] == "codegen"


def test_a_missing_receiver_extra_is_named(tmp_path: Path) -> None:
    """serve without starlette says which package is missing and which extra brings it, on one line, exit 2."""
    done = _flowledger_without(["starlette"], "serve", "--db", str(tmp_path / "x.db"), "--port", "0", cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "flowledger serve: starlette is not installed; install the receiver extra: pip install 'flowledger[receiver]'"
    ]


def test_a_missing_codegen_extra_is_named(tmp_path: Path) -> None:
    """generate without jinja2 names the codegen extra."""
    definition = tmp_path / "wf.yaml"
    definition.write_text("flowledger: 1\nworkflow: {id: wf}\nnodes:\n  - {id: a, call: 'os.path:basename'}\n")
    done = _flowledger_without(["jinja2"], "generate", str(definition), "-o", str(tmp_path / "wf.py"), cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "install the codegen extra: pip install 'flowledger[codegen]'" in done.stderr


def test_ctrl_c_while_the_commands_load_is_one_line(tmp_path: Path) -> None:
    """A SIGINT that arrives while the commands' modules are imported is "error: interrupted" and exit 1."""
    code = (
        "import signal, sys\n"
        "class SignalOnImport:\n"  # a real SIGINT, delivered as the receiver's commands start to load
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'flowledger.receiver.cli._registry':\n"
        "            signal.raise_signal(signal.SIGINT)\n"
        "        return None\n"
        "sys.meta_path.insert(0, SignalOnImport())\n"
        "from flowledger.cli import main\n"
        "main(['--help'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr == "error: interrupted\n"
