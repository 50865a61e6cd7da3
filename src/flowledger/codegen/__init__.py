"""flowledger codegen."""
