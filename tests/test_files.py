"""Writing a named file whole: through a temporary file renamed over it, except over what is not a regular file."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from flowledger._files import write_text_atomically
from flowledger.codegen._cli import generate_command

DEFINITION = "flowledger: 1\nworkflow: {id: wf}\nnodes:\n  - {id: a, call: 'm:f'}\n"


def _drain(fifo: Path) -> tuple[threading.Thread, list[bytes]]:
    """A reader of ``fifo`` on a thread of its own: what it read once the writer closes is in the list."""
    got: list[bytes] = []

    def read() -> None:
        with fifo.open("rb") as pipe:
            got.append(pipe.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return reader, got


def test_a_file_is_replaced_whole_with_its_mode_and_nothing_left_beside_it(tmp_path: Path) -> None:
    """A new or existing file gets the text and the mode given, and no temporary file stays in the folder."""
    target = tmp_path / "out.txt"
    target.write_text("old")
    write_text_atomically(target, "new\n", mode=0o600)
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_a_named_pipe_is_written_not_replaced(tmp_path: Path) -> None:
    """A path that is not a regular file (a pipe, as /dev/null is a device) is written, and stays what it was."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader, got = _drain(fifo)
    write_text_atomically(fifo, "through the pipe\n", mode=0o644)
    reader.join(10)
    assert got == [b"through the pipe\n"]
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_generate_into_a_named_pipe_leaves_the_pipe(tmp_path: Path) -> None:
    """`generate -o PIPE` writes the module into the pipe; renaming over it made a regular file of it (as root,
    `-o /dev/null` replaced the machine's /dev/null)."""
    definition = tmp_path / "wf.yaml"
    definition.write_text(DEFINITION)
    fifo = tmp_path / "module.py"
    os.mkfifo(fifo)
    reader, got = _drain(fifo)
    result = CliRunner().invoke(generate_command, [str(definition), "-o", str(fifo)])
    reader.join(10)
    assert result.exit_code == 0, result.output
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert b"async def run(" in got[0]


def test_an_error_names_the_file_asked_for(tmp_path: Path) -> None:
    """A folder that is not there is named by the file asked for, never by the temporary file."""
    target = tmp_path / "missing" / "out.txt"
    with pytest.raises(OSError, match=r"missing/out\.txt") as caught:
        write_text_atomically(target, "x", mode=0o644)
    assert ".partial" not in str(caught.value)
