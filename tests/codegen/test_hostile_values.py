"""Values a definition can hold that the reader, the generated module or the receiver cannot take.

Each one is a problem with its file, line, column and place (exit 2), never an exception: numbers past the
float range, very long dependency chains, needs reported at the index the user wrote, YAML tags and keys that
are not strings, six-field cron, bounds the receiver refuses, and strings that are not Unicode text.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from flowledger.codegen._cli import validate_command
from flowledger.codegen._load import parse_definition
from flowledger.codegen._validate import RECEIVER_MAX_NUMBER, validate
from tests.codegen.test_validate import HEAD, problems

NODE = "nodes:\n  - {id: a, call: 'm:f'}\n"


def place(text: str, needle: str) -> tuple[int, int]:
    """1-based line and column of the first ``needle`` in ``text``."""
    at = text.index(needle)
    return text.count("\n", 0, at) + 1, at - text.rfind("\n", 0, at)


# --- numbers past the float range ----------------------------------------------------------------------------

HUGE = "1" + "0" * 399
"""Above the largest float (about 1.8e308): float() of it overflows."""
GIANT = "7" * 5000
"""Past Python's 4300-digit limit on converting text to int."""

YAML_NUMBER_PLACES = [
    ("nodes[0].timeout_s", HEAD + "nodes:\n  - {id: a, call: 'm:f', timeout_s: N}\n"),
    ("limits.deadline_s", HEAD + "limits: {deadline_s: N}\n" + NODE),
    ("limits.budget_usd", HEAD + "limits:\n  budget_usd: N\n" + NODE),
    ("trigger.schedule.every_s", HEAD + "trigger: {type: schedule, schedule: {every_s: N}}\n" + NODE),
    ("nodes[0].retry.backoff_s", HEAD + "nodes:\n  - {id: a, call: 'm:f', retry: {attempts: 2, backoff_s: N}}\n"),
    ("nodes[0].with.n[1]", HEAD + "nodes:\n  - {id: a, call: 'm:f', with: {n: [1, N]}}\n"),
]


def _too_large(digits: str) -> str:
    return (
        f"the number `{digits[:6]}...{digits[-4:]}` has {len(digits)} digits, beyond the range of a 64-bit "
        "float (about 1.8e308); write a smaller number"
    )


@pytest.mark.parametrize("digits", [HUGE, GIANT, "-" + GIANT], ids=["400-digits", "5000-digits", "negative"])
@pytest.mark.parametrize(("path", "template"), YAML_NUMBER_PLACES, ids=[p for p, _ in YAML_NUMBER_PLACES])
def test_yaml_numbers_past_the_float_range_are_placed_problems(path: str, template: str, digits: str) -> None:
    """An integer too large for a float is refused where it is written, in any field, `with` included."""
    text = template.replace("N", digits)
    line, column = place(text, digits)
    assert problems(text) == [f"wf.yaml:{line}:{column}: {path}: {_too_large(digits.lstrip('-'))}"]


def test_yaml_hex_and_octal_past_the_float_range_are_refused() -> None:
    """Hex and octal integers (YAML 1.2 core schema) are bounded like decimal ones."""
    hex_digits = "0x" + "f" * 300
    found = problems(HEAD + f"nodes:\n  - {{id: a, call: 'm:f', with: {{n: {hex_digits}, o: 0o17}}}}\n")
    assert len(found) == 1
    assert found[0].startswith("wf.yaml:4:36: nodes[0].with.n: the number `0xffff...ffff` has 302 digits")


def _json_definition(section: str, value: dict[str, Any]) -> dict[str, Any]:
    definition: dict[str, Any] = {"flowledger": 1, "workflow": {"id": "wf"}, "nodes": [{"id": "a", "call": "m:f"}]}
    if section == "node":
        definition["nodes"][0].update(value)
    else:
        definition[section] = value
    return definition


JSON_NUMBER_PLACES = [
    ("nodes[0].timeout_s", "node", {"timeout_s": "N"}),
    ("limits.deadline_s", "limits", {"deadline_s": "N"}),
    ("limits.budget_usd", "limits", {"budget_usd": "N"}),
    ("trigger.schedule.every_s", "trigger", {"type": "schedule", "schedule": {"every_s": "N"}}),
    ("nodes[0].retry.backoff_s", "node", {"retry": {"attempts": 2, "backoff_s": "N"}}),
    ("nodes[0].with.deep[0].n", "node", {"with": {"deep": [{"n": "N"}]}}),
]


@pytest.mark.parametrize("digits", [HUGE, GIANT], ids=["400-digits", "5000-digits"])
@pytest.mark.parametrize(("path", "section", "value"), JSON_NUMBER_PLACES, ids=[p for p, _, _ in JSON_NUMBER_PLACES])
def test_json_numbers_past_the_float_range_are_placed_problems(
    path: str, section: str, value: dict[str, Any], digits: str
) -> None:
    """The JSON reader refuses the same integers at the same places."""
    text = json.dumps(_json_definition(section, value), indent=1).replace('"N"', digits)
    line, column = place(text, digits)
    assert problems(text, "wf.json") == [f"wf.json:{line}:{column}: {path}: {_too_large(digits)}"]


def test_the_largest_float_still_reads() -> None:
    """The bound is the float range itself: the largest float, written as an integer, is a number like any other."""
    largest = str(int(1.7976931348623157e308))
    doc = parse_definition(f'{{"n": {largest}, "m": -{largest}}}'.encode(), "wf.json")
    assert doc.data == {"n": int(largest), "m": -int(largest)}


def test_the_cli_exits_2_on_a_giant_number(tmp_path: Path) -> None:
    """`flowledger validate` on a 5000-digit integer lists the problem and exits 2, not 1 with an error to report."""
    bad = tmp_path / "wf.yaml"
    bad.write_text(HEAD + f"nodes:\n  - {{id: a, call: 'm:f', timeout_s: {GIANT}}}\n")
    result = CliRunner().invoke(validate_command, [str(bad)])
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [f"{bad}:4:37: nodes[0].timeout_s: {_too_large(GIANT)}", "1 problem found."]


# --- long chains of needs -----------------------------------------------------------------------------------

CHAIN = 1200
"""Past Python's default recursion limit (1000), so a recursive graph walk would fail."""


def test_a_long_chain_declared_sink_first_is_valid() -> None:
    """n1199 needs n1198 ... needs n0, written sink first, validates with the last node as the output."""
    lines = [f"  - {{id: n{i}, call: 'm:f', needs: [n{i - 1}]}}" for i in range(CHAIN - 1, 0, -1)]
    text = HEAD + "nodes:\n" + "\n".join(lines) + "\n  - {id: n0, call: 'm:f'}\n"
    definition = validate(parse_definition(text.encode(), "wf.yaml"))
    assert definition.output == f"n{CHAIN - 1}"
    assert len(definition.nodes) == CHAIN


def test_a_long_cycle_is_reported_once_as_a_path() -> None:
    """A cycle through every node of a long chain is one problem printing the whole path."""
    lines = [f"  - {{id: n{i}, call: 'm:f', needs: [n{(i - 1) % CHAIN}]}}" for i in range(CHAIN - 1, -1, -1)]
    found = problems(HEAD + "nodes:\n" + "\n".join(lines) + "\n")
    path = " -> ".join(f"n{i}" for i in [*range(CHAIN - 1, -1, -1), CHAIN - 1])
    assert found == [f"wf.yaml:4:38: nodes[0].needs[0]: the needs form a cycle: {path}; remove one of these needs"]


def test_cycles_through_shared_nodes_are_each_reported() -> None:
    """Two cycles sharing a node are both reported, each at the need that closes it from its first node."""
    found = problems(
        HEAD + "nodes:\n  - {id: a, call: 'm:f', needs: [b, c]}\n  - {id: b, call: 'm:f', needs: [a]}\n"
        "  - {id: c, call: 'm:f', needs: [a]}\n"
    )
    assert [p.split(": ", 2)[1:] for p in found] == [
        ["nodes[0].needs[0]", "the needs form a cycle: a -> b -> a; remove one of these needs"],
        ["nodes[0].needs[1]", "the needs form a cycle: a -> c -> a; remove one of these needs"],
    ]


# --- needs reported where they are written -----------------------------------------------------------------


def test_an_unknown_need_after_dropped_needs_is_reported_at_its_own_index_and_column() -> None:
    """Self and duplicate needs do not shift the index or column given for the needs after them."""
    found = problems(HEAD + "nodes:\n  - {id: d, call: 'm:f', needs: [d, e, e, zz]}\n  - {id: e, call: 'm:f'}\n")
    assert found == [
        "wf.yaml:4:34: nodes[0].needs[0]: node `d` cannot need itself",
        "wf.yaml:4:40: nodes[0].needs[2]: `e` is listed twice; list each need once",
        "wf.yaml:4:43: nodes[0].needs[3]: unknown node `zz`; needs must name nodes declared in `nodes`",
    ]


def test_a_cycle_after_a_dropped_need_is_reported_at_its_own_index() -> None:
    """The need that closes a cycle is placed at its index as written, not among the needs kept."""
    found = problems(HEAD + "nodes:\n  - {id: a, call: 'm:f', needs: [a, b]}\n  - {id: b, call: 'm:f', needs: [a]}\n")
    assert found == [
        "wf.yaml:4:34: nodes[0].needs[0]: node `a` cannot need itself",
        "wf.yaml:4:37: nodes[0].needs[1]: the needs form a cycle: a -> b -> a; remove one of these needs",
    ]


# --- YAML tags and keys --------------------------------------------------------------------------------------

TAGGED = [
    ("workflow: !!python/object/apply:os.system {id: y}\n" + NODE, "2:11: workflow", "!!python/object/apply:os.system"),
    ("workflow: {id: wf}\nnodes: !custom\n  - {id: a, call: 'm:f'}\n", "3:8: nodes", "!custom"),
    ("workflow: {id: wf}\nnodes:\n  - {id: a, call: 'm:f', with: {s: !!set {x}}}\n", "4:36: nodes[0].with.s", "!!set"),
    (
        "workflow: {id: wf}\nnodes:\n  - {id: a, call: 'm:f', with: {s: !!omap [{x: 1}]}}\n",
        "4:36: nodes[0].with.s",
        "!!omap",
    ),
    ("workflow: {id: !!str wf}\n" + NODE, "2:16: workflow.id", "!!str"),
    ("workflow: {id: wf}\nnodes:\n  - {id: a, call: 'm:f', with: {n: ! 12}}\n", "4:36: nodes[0].with.n", "!"),
    ("workflow: {id: wf}\nnodes:\n  - {id: a, call: 'm:f', with: {!!str k: 1}}\n", "4:33: nodes[0].with", "!!str"),
]


@pytest.mark.parametrize(("body", "where", "tag"), TAGGED, ids=[t for _, _, t in TAGGED])
def test_every_explicit_yaml_tag_is_a_placed_problem(body: str, where: str, tag: str) -> None:
    """A tag on a list, a mapping, a scalar or a key is refused where it is written."""
    assert problems("flowledger: 1\n" + body) == [
        f"wf.yaml:{where}: YAML tags (`{tag}`) are not supported: a definition holds JSON values; remove the tag"
    ]


@pytest.mark.parametrize(("key", "kind"), [("1", "a number"), ("null", "null"), ("~", "null"), ("true", "a boolean")])
def test_yaml_keys_that_are_not_strings_are_placed_problems(key: str, kind: str) -> None:
    """`1:`, `null:`, `~:` and `true:` are not strings in YAML 1.2, so they are refused as keys instead of renamed."""
    found = problems(HEAD + f"nodes:\n  - {{id: a, call: 'm:f', with: {{{key}: x}}}}\n")
    assert found == [
        f"wf.yaml:4:33: nodes[0].with: the key `{key}` is {kind} in YAML, not a string; "
        f"a mapping key must be a string, so quote it: '{key}'"
    ]


def test_quoted_keys_that_look_like_numbers_are_strings() -> None:
    """Quoting a key makes it a string key, as the problem suggests."""
    doc = parse_definition(b"'1': a\n\"null\": b\n", "wf.yaml")
    assert doc.data == {"1": "a", "null": "b"}


# --- cron -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cron", ["* * * * * *", "0 0 * * * * 2030"])
def test_cron_with_more_than_five_fields_is_refused(cron: str) -> None:
    """Six-field cron (seconds) would fire every second; only five fields are accepted, as documented."""
    found = problems(HEAD + f"trigger: {{type: schedule, schedule: {{cron: '{cron}'}}}}\n" + NODE)
    assert len(found) == 1
    assert found[0].startswith(f"wf.yaml:3:44: trigger.schedule.cron: {cron!r} is not a cron expression")
    assert "write five fields `MIN HOUR DAY MONTH WEEKDAY`" in found[0]


def test_five_field_cron_is_accepted() -> None:
    """The documented form still validates."""
    assert problems(HEAD + "trigger: {type: schedule, schedule: {cron: '*/5 * * * 1-5'}}\n" + NODE) == []


# --- bounds the receiver refuses --------------------------------------------------------------------------------


def _schema(name: str) -> dict[str, Any]:
    text = resources.files("flowledger").joinpath("schemas", name).read_text(encoding="utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


def test_limits_are_bounded_as_the_receiver_bounds_them() -> None:
    """The bound on limits is the maximum the event schema gives them in run_started, and the definition schema's."""
    sent = _schema("events.v1.schema.json")["$defs"]["run_started"]["properties"]["limits"]["properties"]
    limits = _schema("definition.v1.schema.json")["properties"]["limits"]["properties"]
    for field in ("deadline_s", "budget_usd"):
        (bounded,) = [choice for choice in sent[field]["anyOf"] if "maximum" in choice]
        assert bounded["maximum"] == RECEIVER_MAX_NUMBER == limits[field]["maximum"], field


def test_limits_past_what_the_receiver_records_are_refused() -> None:
    """`deadline_s: 1e300` or a budget just past 2**53 is refused at validate time, naming the bound."""
    found = problems(HEAD + "limits: {deadline_s: 1e300, budget_usd: 9007199254740993}\n" + NODE)
    assert found == [
        "wf.yaml:3:22: limits.deadline_s: must be at most 9007199254740992 (2**53, the largest the receiver "
        "records), found 1e+300",
        "wf.yaml:3:41: limits.budget_usd: must be at most 9007199254740992 (2**53, the largest the receiver "
        "records), found 9007199254740993",
    ]
    assert problems(HEAD + "limits: {deadline_s: 9007199254740992, budget_usd: 9007199254740992.0}\n" + NODE) == []


# --- strings that are not Unicode text -------------------------------------------------------------------------


def test_json_strings_with_lone_surrogates_are_placed_problems() -> None:
    r"""`\ud800` alone is not a character: in a name, a `with` value or a key it is refused where it is written."""
    text = (
        '{"flowledger": 1, "workflow": {"id": "wf", "name": "x\\ud800y"},\n'
        ' "nodes": [{"id": "a", "call": "m:f", "with": {"s": ["\\udfff"], "k\\ud800": 1, "ok": "\\ud83d\\ude00"}}]}\n'
    )
    message = (
        "the string holds a lone surrogate (`\\{}`), which is not Unicode text; remove it or write a whole character"
    )
    assert problems(text, "wf.json") == [
        f"wf.json:1:52: workflow.name: {message.format('ud800')}",
        f"wf.json:2:54: nodes[0].with.s[0]: {message.format('udfff')}",
        f"wf.json:2:65: nodes[0].with.k\\ud800: {message.format('ud800')}",
    ]


def test_the_cli_prints_a_surrogate_problem(tmp_path: Path) -> None:
    """The problem is printable: the CLI exits 2 with it, not 1 on an encoding error."""
    bad = tmp_path / "wf.json"
    bad.write_text('{"flowledger": 1, "workflow": {"id": "wf"}, "nodes": [{"id": "a", "call": "m:f", "\\udfff": 1}]}')
    result = CliRunner().invoke(validate_command, [str(bad)])
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[-1] == "1 problem found."
