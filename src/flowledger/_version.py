"""The version of flowledger."""

__version__ = "0.1.0"
