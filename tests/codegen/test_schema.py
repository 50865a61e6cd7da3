"""The definition JSON Schema shipped in the package agrees with the validator."""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest

from flowledger import workflow
from flowledger.codegen import _validate
from flowledger.codegen._load import load_definition

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
GOOD = sorted(
    [
        *(ROOT / "examples").glob("*.yaml"),
        *(ROOT / "examples").glob("*.json"),
        *GOLDEN.glob("*.yaml"),
        *GOLDEN.glob("*.json"),
    ]
)


def _schema() -> dict[str, Any]:
    text = resources.files("flowledger").joinpath("schemas", "definition.v1.schema.json").read_text(encoding="utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


@pytest.mark.parametrize("path", GOOD, ids=[p.name for p in GOOD])
def test_valid_definitions_match_the_schema(path: Path) -> None:
    """Every example and golden definition validates against the shipped JSON Schema."""
    check = fastjsonschema.compile(_schema())
    check(load_definition(path).data)


def test_schema_rejects_unknown_keys() -> None:
    """The schema, like the validator, refuses keys it does not know."""
    check = fastjsonschema.compile(_schema())
    with pytest.raises(fastjsonschema.JsonSchemaValueException):
        check({"flowledger": 1, "workflow": {"id": "x"}, "nodes": [{"id": "a", "call": "m:f", "neds": []}]})


def test_schema_keys_are_the_validators_keys() -> None:
    """Each section of the schema lists exactly the keys the validator accepts."""
    schema = _schema()
    props = schema["properties"]
    node = schema["$defs"]["node"]["properties"]
    assert list(props) == list(_validate.TOP_KEYS)
    assert list(props["workflow"]["properties"]) == list(_validate.WORKFLOW_KEYS)
    assert list(props["trigger"]["properties"]) == list(_validate.TRIGGER_KEYS)
    assert list(props["limits"]["properties"]) == list(_validate.LIMITS_KEYS)
    assert list(node) == list(_validate.NODE_KEYS)
    assert list(node["retry"]["properties"]) == list(_validate.RETRY_KEYS)
    assert list(node["map"]["properties"]) == list(_validate.MAP_KEYS)
    assert list(node["http"]["properties"]) == list(_validate.HTTP_KEYS)


def test_schema_defaults_are_the_runtimes_defaults() -> None:
    """Each default the schema states is the constant the runtime (and so the validator) declares."""
    node = _schema()["$defs"]["node"]["properties"]
    retry = node["retry"]["properties"]
    assert retry["backoff_s"]["default"] == workflow.DEFAULT_BACKOFF_S
    assert retry["factor"]["default"] == workflow.DEFAULT_BACKOFF_FACTOR
    assert retry["max_backoff_s"]["default"] == workflow.DEFAULT_MAX_BACKOFF_S
    assert node["map"]["properties"]["max_concurrency"]["default"] == workflow.DEFAULT_MAP_CONCURRENCY
    assert node["http"]["properties"]["method"]["default"] == workflow.DEFAULT_HTTP_METHOD.value
    assert node["on_error"]["default"] == workflow.DEFAULT_ON_ERROR.value
    assert node["effect"]["default"] is workflow.DEFAULT_EFFECT
    stated = {
        (section, name)
        for section, spec in [("node", node), *((k, v.get("properties", {})) for k, v in node.items())]
        for name, prop in spec.items()
        if isinstance(prop, dict) and "default" in prop
    }
    assert stated == {
        ("retry", "backoff_s"),
        ("retry", "factor"),
        ("retry", "max_backoff_s"),
        ("map", "max_concurrency"),
        ("http", "method"),
        ("node", "on_error"),
        ("node", "effect"),
    }, "a default was added to the schema: declare it in flowledger.workflow and check it here"


def test_schema_enums_are_the_runtimes_enums() -> None:
    """The schema's on_error values and http methods are the runtime's OnError and HttpMethod."""
    node = _schema()["$defs"]["node"]["properties"]
    assert node["on_error"]["enum"] == [e.value for e in workflow.OnError]
    assert node["http"]["properties"]["method"]["enum"] == [m.value for m in workflow.HttpMethod]


def test_validator_fills_the_runtimes_defaults(write_definition: Callable[..., Path]) -> None:
    """A definition that leaves retry, map and http settings out gets the runtime's defaults."""
    from flowledger.codegen import load

    definition = load(
        write_definition(
            """
            flowledger: 1
            workflow: {id: defaults}
            nodes:
              - {id: a, call: "m:f", retry: {attempts: 2}, map: {}}
              - {id: b, http: {url: "https://example.com/hook"}, needs: [a]}
            """
        )
    )
    a, b = definition.nodes
    assert a.retry == workflow.Retry(attempts=2)
    assert a.map == workflow.Map()
    assert (a.effect, a.on_error) == (workflow.DEFAULT_EFFECT, workflow.DEFAULT_ON_ERROR)
    assert b.http is not None
    assert b.http.method is workflow.DEFAULT_HTTP_METHOD


def test_codegen_public_surface() -> None:
    """`flowledger.codegen` exposes exactly its documented API."""
    import flowledger.codegen

    assert sorted(flowledger.codegen.__all__) == ["Definition", "GenerationError", "generate", "load"]


def test_import_flowledger_stays_light() -> None:
    """`import flowledger` (and the workflow runtime) import neither jinja2, PyYAML, click nor starlette."""
    import subprocess
    import sys

    code = (
        "import sys, flowledger, flowledger.workflow; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'jinja2', 'yaml', 'click', 'starlette', 'uvicorn'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
