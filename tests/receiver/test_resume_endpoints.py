"""FLOWLEDGER_RESUME_ENDPOINTS: workflow ids to their apps' base URLs, refused entry by entry."""

from __future__ import annotations

import pytest

from flowledger._exceptions import ConfigError
from flowledger.receiver._config import config_from_env
from flowledger.receiver._resume_endpoints import parse_resume_endpoints


def test_entries_map_workflow_ids_to_urls() -> None:
    """id=URL pairs separated by commas; blanks ignored, trailing slashes dropped."""
    text = "order-intake=http://127.0.0.1:8000/, refunds=https://apps.example/refunds,"
    assert parse_resume_endpoints(text) == {
        "order-intake": "http://127.0.0.1:8000",
        "refunds": "https://apps.example/refunds",
    }
    config = config_from_env(environ={"FLOWLEDGER_RESUME_ENDPOINTS": "a=http://h:1"})
    assert config.resume_endpoints == {"a": "http://h:1"}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("order-intake", "entry 1 ('order-intake') is not WORKFLOW_ID=URL"),
        ("a=http://h:1,Bad Id=http://h:2", "entry 2 ('Bad Id=http://h:2') is not WORKFLOW_ID=URL"),
        ("a=file:///etc/passwd", "entry 1 ('a=file:///etc/passwd'): the URL must start with http:// or https://"),
    ],
)
def test_a_bad_entry_is_named(text: str, problem: str) -> None:
    """The error names the variable, the entry's position and text, and what it should look like."""
    with pytest.raises(
        ConfigError, match="FLOWLEDGER_RESUME_ENDPOINTS " + problem.replace("(", r"\(").replace(")", r"\)")
    ):
        parse_resume_endpoints(text)
