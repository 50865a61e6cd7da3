"""Reading key, checkpoint and proof files for the CLI, and checking a ledger against a signed checkpoint.

Shared by ``verify --checkpoint FILE --key FILE.pub`` (in :mod:`._commands`)
and the lifecycle commands (in :mod:`._lifecycle`); it imports no database
driver, so ``verify-proof`` stays light.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO

import click

from flowledger._exceptions import KeyFileError, ProofError
from flowledger._files import write_text_atomically
from flowledger.receiver.store._checkpoint import Checkpoint, SignerKey, VerifierKey, open_checkpoint
from flowledger.receiver.store._proof import check_extends

if TYPE_CHECKING:
    from flowledger.receiver.cli._sources import Source

__all__ = [
    "check_against",
    "read_checkpoint",
    "read_signer",
    "read_verifier",
    "write_atomically",
    "writing_atomically",
]


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyFileError(f"there is no {what} at {path}") from None
    except UnicodeDecodeError:
        raise KeyFileError(f"{path} is not a {what} (not UTF-8 text)") from None


_SIGNING_KEY_PREFIX: Final = "PRIVATE+KEY+"
"""How a signed-note signing key starts (a verifier key never does)."""


def read_verifier(path: Path) -> VerifierKey:
    """The verifier key in ``path`` (a FILE.pub written by keygen); the signing key given instead is named as such
    (its text is never shown)."""
    text = _read(path, "verifier key")
    if text.startswith(_SIGNING_KEY_PREFIX):
        raise KeyFileError(f"{path} is the signing key, which stays private: give its verifier key, {path}.pub")
    try:
        return VerifierKey.parse(text)
    except KeyFileError as exc:
        raise KeyFileError(f"{path}: {exc}") from None


def read_signer(path: Path) -> SignerKey:
    """The signing key in ``path`` (the FILE written by keygen); one warning on stderr when others may read it."""
    text = _read(path, "signing key")
    try:
        key = SignerKey.parse(text)
    except KeyFileError as exc:
        raise KeyFileError(f"{path}: {exc}") from None
    mode = path.stat().st_mode
    if mode & 0o077:
        click.echo(
            f"warning: the signing key {path} may be read by others (mode {mode & 0o777:o}); "
            f"keygen writes it 600: chmod 600 {path}",
            err=True,
        )
    return key


def read_checkpoint(path: Path, key: VerifierKey) -> tuple[str, Checkpoint]:
    """The text of a signed checkpoint and what it states, its signature checked with ``key``."""
    text = _read(path, "checkpoint")
    return text, open_checkpoint(text, key)


def write_atomically(path: Path, text: str, *, mode: int = 0o644) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it, so a reader never sees half of it (a device
    such as ``/dev/null`` is written, never replaced)."""
    write_text_atomically(path, text, mode=mode)


@contextmanager
def _naming(path: Path) -> Iterator[None]:
    """An OSError in the block names ``path`` (never a temporary file beside it)."""
    try:
        yield
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None


@contextmanager
def writing_atomically(path: Path, *, mode: int = 0o644) -> Iterator[TextIO]:
    """A text stream whose content replaces ``path`` when the block ends without an error, as
    :func:`write_atomically` does with a whole text (written through a temporary file beside it, renamed over
    it; a device or a pipe is written as it is). On an error the temporary file is removed and ``path`` kept."""
    with _naming(path):
        try:
            special = not stat.S_ISREG(path.stat().st_mode)
        except FileNotFoundError:
            special = False
    if special:
        with _naming(path):
            out = path.open("w", encoding="utf-8", newline="\n")
        with out:
            yield out
        return
    with _naming(path):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            yield out
        with _naming(path):
            os.chmod(tmp, mode)
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_against(source: Source, checkpoints: list[Path], key_path: Path) -> tuple[str | None, dict[str, int]]:
    """Check that the ledger extends each signed checkpoint: the line saying which breaks (None when none does),
    and the size of each checkpoint found extended, by its file."""
    key = read_verifier(key_path)
    extended: dict[str, int] = {}
    for path in checkpoints:
        _, checkpoint = read_checkpoint(path, key)
        head, proof = source.consistency_proof(checkpoint.size)
        try:
            check_extends(checkpoint, head.size, head.root, proof)
        except ProofError as exc:
            return f"ledger does NOT extend checkpoint {path} ({checkpoint.size} entries): {exc}", extended
        extended[str(path)] = checkpoint.size
    return None, extended
