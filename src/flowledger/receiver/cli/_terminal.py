"""What the CLI's human output prints of stored text: control characters shown, never obeyed.

Event data is whatever an SDK (or anyone holding a key) sent: an error
message may hold ``ESC c`` (a terminal reset), ``ESC ]52;...BEL`` (a write
to the clipboard), NUL or a C1 CSI. rich's markup escape does not touch
them, and a terminal would obey them. Every renderer of the receiver's
commands prints through this module: :func:`printable` for a text,
:func:`echo` for a plain line, :class:`Terminal` and :class:`TerminalTable`
for rich's output. ``--json`` is exact and does not come here (JSON escapes
C0 itself); nor does ``export``, whose output is data.

Importing this module is cheap: rich loads when a :class:`Terminal` or a
:class:`TerminalTable` is made.
"""

from __future__ import annotations

from typing import Any, Final

import click

__all__ = ["Terminal", "TerminalTable", "echo", "printable"]

_CONTROLS: Final = (*range(0x20), 0x7F, *range(0x80, 0xA0))
"""C0, DEL and C1: what a terminal may take for a command rather than text."""
_NAMED: Final = {"\t": "\t", "\n": "\\n", "\r": "\\r"}
"""TAB is shown as itself; LF and CR by their usual escapes, every other control character as ``\\xNN``."""
_ONE_LINE: Final = str.maketrans({code: _NAMED.get(chr(code), f"\\x{code:02x}") for code in _CONTROLS})
_LINES: Final = str.maketrans({code: _NAMED.get(chr(code), f"\\x{code:02x}") for code in _CONTROLS if code != 0x0A})


def printable(text: str, *, multiline: bool = False) -> str:
    """``text`` with every control character but TAB replaced by a visible escape (ESC as ``\\x1b``, CR as
    ``\\r``); LF too unless ``multiline`` (a traceback, a log message: text the layout lets span lines), where a
    CRLF line end is shown as LF."""
    if multiline:
        return text.replace("\r\n", "\n").translate(_LINES)
    return text.translate(_ONE_LINE)


def echo(message: str, *, err: bool = False, nl: bool = True, multiline: bool = False) -> None:
    """:func:`click.echo` of a line holding stored text, made :func:`printable`."""
    click.echo(printable(message, multiline=multiline), err=err, nl=nl)


class TerminalTable:
    """The CLI's table (no vertical rules, one space between cells), every cell made :func:`printable`.

    A cell may span lines (the layout folds long cells anyway); the text in it is rich markup, escaped
    by the caller where it is stored text.
    """

    def __init__(self, title: str) -> None:
        from rich import box
        from rich.table import Table

        self.rich = Table(title=printable(title), title_justify="left", box=box.SIMPLE_HEAD, padding=0, show_edge=False)

    def add_column(self, header: str, **style: Any) -> None:
        """A column named ``header``, with rich's column options (``overflow``, ``no_wrap``, ``width``...)."""
        self.rich.add_column(printable(header), **style)

    def add_row(self, *cells: str) -> None:
        """A row of markup cells."""
        self.rich.add_row(*(printable(cell, multiline=True) for cell in cells))


class Terminal:
    """rich's console for the human output: every text printed is made :func:`printable` first."""

    def __init__(self) -> None:
        from rich.console import Console

        self._console = Console()

    @property
    def width(self) -> int:
        """The terminal's width in columns."""
        return self._console.width

    def print(self, shown: str | TerminalTable = "", *, multiline: bool = False, **options: Any) -> None:
        """Print a text (rich markup unless ``markup=False``; an empty line without one) or a table, with rich's
        other print options."""
        if isinstance(shown, TerminalTable):
            self._console.print(shown.rich, **options)
        else:
            self._console.print(printable(shown, multiline=multiline), **options)
