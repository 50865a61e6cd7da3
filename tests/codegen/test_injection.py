"""No string in a definition can become code: a Hypothesis fuzz over every string field.

For each generated definition the module must parse; its AST must equal,
node for node, the AST generated from the same definition with harmless
placeholder strings (so the definition added no code); and every fuzzed
value must come back exactly as the constant in its place.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowledger.codegen import generate

DANGEROUS = ['"""', "'''", '"', "'", "\\", "\n", "\r", "{{", "}}", "{%", "%}", "{#", "\u2028", "\u2029", "\x85", "\x00",
             "#", ")", "(", "\ufeff", "\\N{BULLET}", "\U0001f600", "import os", "__import__('os')", "\t"]  # fmt: skip

free_text = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=30),
    st.lists(st.sampled_from(DANGEROUS), max_size=8).map("".join),
)
url_text = free_text.filter(lambda s: s.isprintable() and not any(c.isspace() for c in s))
path_text = url_text.filter(lambda s: not any(c in s for c in "{}?#%") and not s.startswith("_flowledger"))
header_text = st.one_of(  # what HTTP can carry: visible ASCII, spaces and tabs between
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30),
    st.lists(st.sampled_from([d for d in DANGEROUS if d.isascii() and d.isprintable()]), max_size=8).map("".join),
).map(lambda s: s.strip(" \t"))
header_name = st.text(st.sampled_from("!#$%&'*+.^_`|~-0123456789azAZ"), min_size=1, max_size=12)
json_leaf = st.one_of(
    free_text, st.integers(), st.booleans(), st.none(), st.floats(allow_nan=False, allow_infinity=False)
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(free_text, inner, max_size=3)),
    max_leaves=8,
)


def _definition(
    name: str, version: str, path: str, header: str, url: str, kwarg: Any, header_key: str
) -> dict[str, Any]:
    return {
        "flowledger": 1,
        "workflow": {"id": "fuzz", "name": name, "version": version},
        "trigger": {"type": "http", "http": {"path": path}},
        "output": "hook",
        "nodes": [
            {"id": "first", "call": "pkg.mod:fn", "with": {"value": kwarg, "secret": {"env": "KEY"}}},
            {
                "id": "hook",
                "http": {"url": url, "headers": {"X-Value": header, header_key: "v"}},
                "needs": ["first"],
            },
        ],
    }


def _placeholders(value: Any, counter: list[int]) -> Any:
    """The same JSON shape with every string (keys included) replaced by a numbered placeholder."""
    if isinstance(value, str):
        counter[0] += 1
        return f"placeholder{counter[0]}"
    if isinstance(value, list):
        return [_placeholders(v, counter) for v in value]
    if isinstance(value, dict):
        return {_placeholders(k, counter): _placeholders(v, counter) for k, v in value.items()}
    return value


def _module_ast(tmp: Path, definition: dict[str, Any], label: str) -> tuple[ast.Module, str]:
    path = tmp / f"{label}.json"
    path.write_text(json.dumps(definition), encoding="utf-8")
    source = generate(path, display_name="fuzz.json")
    return ast.parse(source), source


def _compare(ref: ast.AST, got: ast.AST, found: dict[str, Any]) -> None:
    assert type(ref) is type(got), (ast.dump(ref)[:200], ast.dump(got)[:200])
    if isinstance(ref, ast.Constant):
        assert isinstance(got, ast.Constant)
        if isinstance(ref.value, str) and "placeholder" in ref.value:
            found[ref.value] = got.value
        elif isinstance(ref.value, str) and len(ref.value) == 64:
            pass  # the definition's sha256 differs, as it should
        else:
            assert ref.value == got.value
        return
    for field, ref_value in ast.iter_fields(ref):
        got_value = getattr(got, field)
        if isinstance(ref_value, list):
            assert isinstance(got_value, list)
            assert len(ref_value) == len(got_value), field
            for r, g in zip(ref_value, got_value, strict=True):
                if isinstance(r, ast.AST):
                    _compare(r, g, found)
                else:
                    assert r == g
        elif isinstance(ref_value, ast.AST):
            _compare(ref_value, got_value, found)
        else:
            assert ref_value == got_value, field


def _strings(value: Any, out: dict[str, Any], counter: list[int]) -> None:
    """Placeholder name -> original string, in the order _placeholders numbers them."""
    if isinstance(value, str):
        counter[0] += 1
        out[f"placeholder{counter[0]}"] = value
    elif isinstance(value, list):
        for v in value:
            _strings(v, out, counter)
    elif isinstance(value, dict):
        for k, v in value.items():
            _strings(k, out, counter)
            _strings(v, out, counter)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=free_text,
    version=free_text,
    path=path_text,
    header=header_text,
    url=url_text,
    kwarg=json_value,
    header_key=header_name.filter(lambda s: s != "X-Value"),
)
def test_no_definition_string_becomes_code(
    tmp_path: Path, name: str, version: str, path: str, header: str, url: str, kwarg: Any, header_key: str
) -> None:
    """Whatever the strings hold, the module's AST is the generator's own and each value round-trips exactly."""
    values = [name, version, "/" + path, header, "https://h.test/" + url, kwarg, header_key]
    shape = _placeholders(values, [0])
    shape[2], shape[4] = "/" + shape[2], "https://h.test/" + shape[4]  # keep the path and URL valid
    originals: dict[str, Any] = {}
    _strings(values, originals, [0])
    originals[shape[2]] = originals.pop("placeholder3")
    originals[shape[4]] = originals.pop("placeholder5")
    ref_tree, _ = _module_ast(tmp_path, _definition(*shape), "reference")
    got_tree, source = _module_ast(tmp_path, _definition(*values), "fuzzed")
    found: dict[str, Any] = {}
    _compare(ref_tree, got_tree, found)
    assert found == originals
    compile(source, "fuzz.py", "exec")
