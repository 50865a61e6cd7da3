"""configure() refuses a value of the wrong type with ConfigError naming the setting, before comparing it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import flowledger
from flowledger.instrument._config import Settings


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("sample_rate", None),
        ("sample_rate", True),
        ("sample_rate", [0.5]),
        ("sample_rate_by_workflow", {"orders": None}),
        ("sample_rate_by_workflow", {"orders": False}),
        ("sample_rate_by_workflow", {"orders": "0.5"}),
        ("sample_rate_by_workflow", 5),
        ("queue_max_items", None),
        ("queue_max_items", True),
        ("queue_max_bytes", "1024"),
        ("capture_limit_bytes", 4096.5),
        ("log_max_lines", True),
        ("max_retries", None),
        ("max_retries", True),
        ("max_retries", 2.5),
    ],
)
def test_a_value_of_the_wrong_type_is_a_config_error_naming_the_setting(
    setting: str, value: Any, configure: Callable[..., Any]
) -> None:
    """None, a bool, a string or a list where a number goes: ConfigError naming the setting, never a TypeError."""
    with pytest.raises(flowledger.ConfigError, match=setting):
        Settings().updated(**{setting: value})
    with pytest.raises(flowledger.ConfigError, match=setting):
        configure(**{setting: value})
