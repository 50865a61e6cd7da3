"""How payloads become records: converted to JSON, redacted, bounded, and (``capture="full"``) kept whole."""

from flowledger.instrument.capture._bounded import CapturePolicy, capture
from flowledger.instrument.capture._full import capture_mode, full_capture
from flowledger.instrument.capture._jsonable import INT_MAX, INT_MIN, clean_str, safe_str, to_jsonable
from flowledger.instrument.capture._raw_json import RawJSON, materialize

__all__ = [
    "INT_MAX",
    "INT_MIN",
    "CapturePolicy",
    "RawJSON",
    "capture",
    "capture_mode",
    "clean_str",
    "full_capture",
    "materialize",
    "safe_str",
    "to_jsonable",
]
