"""JSON Schemas shipped with flowledger (wire format, definition format)."""
