"""flowledger receiver."""
