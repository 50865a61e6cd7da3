"""Full capture: a node's complete output, content-addressed, for resuming and comparing runs.

With ``capture="full"`` (a definition's ``capture: full``, or ``capture=`` of
:func:`flowledger.run` and :func:`flowledger.node`), ``node_finished`` carries,
besides the usual 4 KiB preview in ``output``:

- ``output_sha256``: the sha256 of the output's JSON text (UTF-8, keys in
  the order the value has them, no spaces), after redaction;
- ``output_capture``: an :class:`~flowledger._wire.OutputCapture` saying
  whether that text is the real output (``full``) or not (``redacted``,
  ``unrepresentable``, ``too_large``);
- ``output_full``: the JSON text itself, unless it is over
  :data:`~flowledger._wire.FULL_CAPTURE_MAX_BYTES`.

The receiver keeps the text in a blob table keyed by its hash, apart from
the ledger, whose entry commits to the hash. A run's trigger data is
captured the same way (``trigger_data_sha256``, ``trigger_data_capture``,
``trigger_data_full``) so that a resume can start again from the first node.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final

from flowledger._wire import FULL_CAPTURE_MAX_BYTES, MARKER_KEY, CaptureMode, OutputCapture
from flowledger.instrument._capture import CapturePolicy, to_jsonable

__all__ = ["capture_mode", "full_capture"]

_encode: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def capture_mode(value: CaptureMode | str | None) -> CaptureMode | None:
    """``value`` as a CaptureMode (None stays None); ValueError naming the choices otherwise."""
    if value is None or isinstance(value, CaptureMode):
        return value
    try:
        return CaptureMode(value)
    except ValueError:
        choices = ", ".join(m.value for m in CaptureMode)
        raise ValueError(f"capture must be one of {choices}, not {value!r}") from None


def _has_marker(value: Any) -> bool:
    if isinstance(value, dict):
        return MARKER_KEY in value or any(_has_marker(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_marker(v) for v in value)
    return False


def full_capture(value: Any, policy: CapturePolicy, prefix: str) -> dict[str, Any]:
    """The ``{prefix}_sha256``, ``{prefix}_capture`` and ``{prefix}_full`` fields of ``value``; never raises."""
    try:
        redacted = to_jsonable(value, policy.redact)
        text = _encode(redacted)
        how = OutputCapture.FULL
        if _has_marker(redacted):
            how = OutputCapture.UNREPRESENTABLE
        elif policy.redact is not None and redacted != to_jsonable(value, None):
            how = OutputCapture.REDACTED
    except Exception:  # a value whose conversion fails: nothing that can be reused
        return {f"{prefix}_capture": OutputCapture.UNREPRESENTABLE.value}
    raw = text.encode("utf-8")
    fields: dict[str, Any] = {f"{prefix}_sha256": hashlib.sha256(raw).hexdigest()}
    if len(raw) > FULL_CAPTURE_MAX_BYTES:
        fields[f"{prefix}_capture"] = OutputCapture.TOO_LARGE.value
        return fields
    fields[f"{prefix}_capture"] = how.value
    fields[f"{prefix}_full"] = text
    return fields
