"""Writing a whole file so that a reader never sees half of it, without replacing what is not a file.

The commands that write a file a user names (``generate -o``, ``keygen``, ``checkpoint -o``, ``prove -o``)
write it through a temporary file beside it and rename that over it. Renaming over ``/dev/null``, a terminal
or a named pipe would put a regular file in its place (as root, ``/dev/null`` for the whole machine), so a
path that exists and is not a regular file is written directly instead.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

__all__ = ["write_text_atomically"]


def write_text_atomically(path: Path, text: str, *, mode: int) -> None:
    """Write ``text`` as UTF-8 to ``path`` (``mode``: a new file's permissions); an ``OSError`` names ``path``,
    never the temporary file."""
    try:
        try:
            special = not stat.S_ISREG(path.stat().st_mode)
        except FileNotFoundError:
            special = False
        if special:  # a device or a pipe: written as it is, never replaced
            with path.open("w", encoding="utf-8", newline="\n") as out:
                out.write(text)
            return
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
                out.write(text)
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
