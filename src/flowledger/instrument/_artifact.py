"""Artifacts of a node attempt: what it produced, by name, URI, media type, size and sha256.

``flowledger.artifact("out/report.pdf")`` inside a node records the file's
size and its sha256, read in 1 MiB chunks (the file is never held in
memory); ``flowledger.artifact(data, name="answer.json")`` records bytes
the same way. Only the record travels: the contents stay where they are.
A file or bytes over :data:`HASH_LIMIT_BYTES` are not hashed (reading them
would hold up the workflow): the record says so and why, in
``sha256_skipped``. A file that cannot be read is recorded too, with the
reason, since telemetry must not fail the work.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
from pathlib import Path
from typing import Any, Final

from flowledger._exceptions import UsageError

__all__ = ["HASH_LIMIT_BYTES", "MAX_ARTIFACTS_PER_ATTEMPT", "artifact_record"]

HASH_LIMIT_BYTES: Final = 50 * 1024 * 1024
"""Files and bytes larger than this (50 MiB) are recorded without their sha256."""
MAX_ARTIFACTS_PER_ATTEMPT: Final = 100
"""Artifacts one node attempt may record."""
MAX_NAME_CHARS: Final = 256
MAX_URI_CHARS: Final = 4096
MAX_MEDIA_TYPE_CHARS: Final = 256
_CHUNK_BYTES: Final = 1024 * 1024

Source = str | os.PathLike[str] | bytes | bytearray | memoryview


def _text(what: str, value: Any, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise UsageError(f"flowledger.artifact(): {what} must be a non-empty string of at most {limit} characters")
    return value


def _sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _too_big(size: int) -> str:
    return (
        f"{size} bytes is over the {HASH_LIMIT_BYTES} byte (50 MiB) hashing limit: "
        "hashing it would hold up the workflow"
    )


def artifact_record(
    source: Source, *, name: str | None = None, uri: str | None = None, media_type: str | None = None
) -> dict[str, Any]:
    """The wire record of one artifact: ``{name, uri, media_type, size_bytes, sha256, sha256_skipped}``.

    UsageError for arguments that cannot make a record (bytes without a
    name, a name too long); a file that cannot be read gives a record that says why.
    """
    sha256: str | None = None
    skipped: str | None = None
    size: int | None
    if isinstance(source, bytes | bytearray | memoryview):
        if name is None:
            raise UsageError("flowledger.artifact(): bytes need a name=, such as name='answer.json'")
        data = memoryview(source).cast("B")
        size = data.nbytes
        if size > HASH_LIMIT_BYTES:
            skipped = _too_big(size)
        else:
            sha256 = hashlib.sha256(data).hexdigest()
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        if name is None:
            name = path.name or str(path)
        if uri is None:
            uri = path.absolute().as_uri()
        try:
            size = path.stat().st_size
            if size > HASH_LIMIT_BYTES:
                skipped = _too_big(size)
            else:
                sha256 = _sha256_of_file(path)
        except OSError as exc:
            size = None
            skipped = f"the file could not be read: {type(exc).__name__}: {exc.strerror or exc}"
    else:
        raise UsageError(
            f"flowledger.artifact() takes a path or bytes, got {type(source).__name__}; pass uri= for a remote object"
        )
    if media_type is None:
        media_type = mimetypes.guess_type(name)[0]
    return {
        "name": _text("name", name, MAX_NAME_CHARS),
        "uri": _text("uri", uri, MAX_URI_CHARS),
        "media_type": _text("media_type", media_type, MAX_MEDIA_TYPE_CHARS),
        "size_bytes": size,
        "sha256": sha256,
        "sha256_skipped": skipped,
    }
