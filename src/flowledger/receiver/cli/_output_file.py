"""``-o FILE``: a file a command writes, checked as given, before :class:`~pathlib.Path` reads it.

A Path forgets what a file name needs: ``Path("")`` is ``.`` (the folder, whose name is empty) and
``Path("sub/")`` is ``sub`` (so ``-o sub/`` would write a file named ``sub``). :data:`OUTPUT_FILE` refuses both
as usage errors naming the option (exit 2), for every command that writes a file (``export``, ``keygen``,
``checkpoint``, ``prove``): the text given must end with a file's name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final

import click

__all__ = ["OUTPUT_FILE", "OutputFile"]

_SEPARATORS: Final = tuple({os.sep, os.altsep or os.sep, "/"})


class OutputFile(click.Path):
    """A file to write: not empty, not a path ending in a separator, not an existing folder."""

    def __init__(self) -> None:
        super().__init__(dir_okay=False, path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str):
            if not value:
                self.fail("it is empty: give the name of the file to write", param, ctx)
            if value.endswith(_SEPARATORS):
                self.fail(f"{value!r} names a folder (it ends with {value[-1]}): give a file name in it", param, ctx)
            if Path(value).name in ("", ".", ".."):
                self.fail(f"{value!r} names a folder, not a file: give a file name in it", param, ctx)
        return super().convert(value, param, ctx)


OUTPUT_FILE: Final = OutputFile()
