"""Every error message of the definition checks, on a corpus of bad definitions.

Each case is a definition and the exact problems it must produce: file,
line and column, place in the definition, what is wrong, what is allowed.
"""

from __future__ import annotations

import textwrap

import pytest

from flowledger import DefinitionError
from flowledger.codegen._load import parse_definition, read_definition
from flowledger.codegen._validate import validate

HEAD = "flowledger: 1\nworkflow: {id: wf}\n"
LONG_LOWERING = "\u0130" * 64
"""A 64-character id whose lowercase is twice as long (`i` and a combining dot each)."""


def problems(text: str, name: str = "wf.yaml") -> list[str]:
    """The problems reported for ``text`` (empty when it is valid)."""
    try:
        validate(read_definition(textwrap.dedent(text).encode(), name))
    except DefinitionError as exc:
        return exc.problems
    return []


CORPUS: list[tuple[str, str, list[str]]] = [
    (
        "the reader's problem (a tag) listed with the validator's",
        HEAD + "limits: {deadline_s: !!float 5}\nnodes:\n  - {id: a, call: 'm:f', timeout_s: 0}\n",
        [
            "wf.yaml:3:22: limits.deadline_s: YAML tags (`!!float`) are not supported: a definition holds JSON "
            "values; remove the tag",
            "wf.yaml:5:37: nodes[0].timeout_s: must be greater than 0, found 0",
        ],
    ),
    (
        "keys the reader left out of the root hide only what the root itself would be told, not the nodes",
        "flowledger: 1\n!!str workflow: {id: wf}\n1: x\nnodes:\n  - {id: a, call: nope}\n",
        [
            "wf.yaml:2:1: (root): YAML tags (`!!str`) are not supported: a definition holds JSON values; "
            "remove the tag",
            "wf.yaml:3:1: (root): the key `1` is a number in YAML, not a string; a mapping key must be a string, "
            "so quote it: '1'",
            "wf.yaml:5:19: nodes[0].call: 'nope' is not an import path; write `module.path:function` with Python "
            "identifiers on both sides of one colon",
        ],
    ),
    (
        "an alias of a value left out is read again where it is put, and nothing more said of it",
        HEAD + "limits: {deadline_s: &t !!float 5}\nnodes:\n  - {id: a, call: 'm:f', timeout_s: *t}\n",
        [
            "wf.yaml:3:22: limits.deadline_s: YAML tags (`!!float`) are not supported: a definition holds JSON "
            "values; remove the tag",
            "wf.yaml:5:37: nodes[0].timeout_s: YAML tags (`!!float`) are not supported: a definition holds JSON "
            "values; remove the tag",
        ],
    ),
    (
        "an unknown key is named even when its value was left out",
        HEAD + "nodes:\n  - {id: a, call: 'm:f', retyr: !!str x}\n",
        [
            "wf.yaml:4:26: nodes[0].retyr: unknown key `retyr` (did you mean `retry`?); allowed keys: `id`, `call`, "
            "`http`, `with`, `needs`, `retry`, `timeout_s`, `when`, `map`, `effect`, `on_error`, `capture`",
            "wf.yaml:4:33: nodes[0].retyr: YAML tags (`!!str`) are not supported: a definition holds JSON values; "
            "remove the tag",
        ],
    ),
    (
        "a duplicate key keeps the first value, which the validator still checks",
        HEAD + "nodes:\n  - id: a\n    call: nope\n    call: 'm:g'\n",
        [
            "wf.yaml:5:11: nodes[0].call: 'nope' is not an import path; write `module.path:function` with Python "
            "identifiers on both sides of one colon",
            "wf.yaml:6:5: nodes[0].call: duplicate key `call` (first written at line 5); keep one",
        ],
    ),
    (
        "a tag on a mapping keeps the mapping, which the validator still checks",
        "--- !!map\nflowledger: 2\nworkflow: {id: wf}\nnodes:\n  - {id: a, call: 'm:f'}\n",
        [
            "wf.yaml:1:5: (root): YAML tags (`!!map`) are not supported: a definition holds JSON values; "
            "remove the tag",
            "wf.yaml:2:13: flowledger: format version 2 is not supported; this flowledger reads `flowledger: 1`",
        ],
    ),
    (
        "a duplicate key listed with the validator's problems, and nothing said of what it left out",
        HEAD + "nodes:\n  - id: a\n    call: 'm:f'\n    call: 'm:g'\n  - {id: b, call: nope}\n",
        [
            "wf.yaml:4:3: nodes: 2 nodes have no dependents (`a`, `b`); add `output: NODE_ID` to say which one is "
            "the workflow's output",
            "wf.yaml:6:5: nodes[0].call: duplicate key `call` (first written at line 5); keep one",
            "wf.yaml:7:19: nodes[1].call: 'nope' is not an import path; write `module.path:function` with Python "
            "identifiers on both sides of one colon",
        ],
    ),
    (
        "unknown top-level key with suggestion",
        HEAD + "nodse: []\nnodes:\n  - {id: a, call: 'm:f'}\n",
        [
            "wf.yaml:3:1: nodse: unknown key `nodse` (did you mean `nodes`?); allowed keys: "
            "`flowledger`, `workflow`, `trigger`, `limits`, `output`, `nodes`, `sample_rate`, `project`, "
            "`agent_id`, `intent`"
        ],
    ),
    (
        "run context values the wire format does not take",
        HEAD + "project: my project\nagent_id: ''\nintent: 3\nnodes:\n  - {id: a, call: 'm:f'}\n",
        [
            "wf.yaml:3:10: project: project 'my project' is not a project name: 1 to 128 letters, digits, "
            "_ . or -, starting with a letter or digit",
            "wf.yaml:4:11: agent_id: agent_id must not be empty",
            "wf.yaml:5:9: intent: expected a string, found a number; quote the value",
        ],
    ),
    (
        "an intent over its length",
        HEAD + f"intent: {'x' * 257}\nnodes:\n  - {{id: a, call: 'm:f'}}\n",
        ["wf.yaml:3:9: intent: the string is 257 characters long; at most 256 are allowed"],
    ),
    (
        "missing required sections",
        "flowledger: 1\n",
        ["wf.yaml:1:1: (root): missing required key `nodes`", "wf.yaml:1:1: (root): missing required key `workflow`"],
    ),
    (
        "wrong format version",
        "flowledger: 2\nworkflow: {id: wf}\nnodes:\n  - {id: a, call: 'm:f'}\n",
        ["wf.yaml:1:13: flowledger: format version 2 is not supported; this flowledger reads `flowledger: 1`"],
    ),
    (
        "bad workflow id with suggestion",
        "flowledger: 1\nworkflow: {id: Order Intake}\nnodes:\n  - {id: a, call: 'm:f'}\n",
        [
            "wf.yaml:2:16: workflow.id: 'Order Intake' is not a workflow id; use lowercase letters, digits, `_` "
            "and `-`, starting with a letter or digit (for example `order-intake`)"
        ],
    ),
    (
        "version must be a string",
        "flowledger: 1\nworkflow: {id: wf, version: 3}\nnodes:\n  - {id: a, call: 'm:f'}\n",
        ["wf.yaml:2:29: workflow.version: expected a string, found a number; quote the value"],
    ),
    (
        "unknown trigger type",
        HEAD + "trigger: {type: cron}\nnodes:\n  - {id: a, call: 'm:f'}\n",
        ["wf.yaml:3:17: trigger.type: 'cron' is not allowed; use one of `manual`, `http`, `schedule`"],
    ),
    (
        "http trigger without path",
        HEAD + "trigger: {type: http}\nnodes:\n  - {id: a, call: 'm:f'}\n",
        ["wf.yaml:3:10: trigger: an http trigger needs `http: {path: /some/path}`"],
    ),
    (
        "http path must start with a slash",
        HEAD + "trigger: {type: http, http: {path: orders}}\nnodes:\n  - {id: a, call: 'm:f'}\n",
        [
            "wf.yaml:3:36: trigger.http.path: 'orders' is not a route path; start it with `/` and use no spaces, "
            "braces or control characters"
        ],
    ),
    (
        "schedule settings on a manual trigger, bad interval",
        HEAD
        + "trigger: {type: schedule, schedule: {every_s: 0}, http: {path: /x}}\n"
        + "nodes:\n  - {id: a, call: 'm:f'}\n",
        [
            "wf.yaml:3:47: trigger.schedule.every_s: must be greater than 0, found 0",
            "wf.yaml:3:51: trigger.http: `http` settings only apply to `type: http`; remove them",
        ],
    ),
    (
        "schedule needs exactly one of every_s and cron",
        HEAD
        + "trigger: {type: schedule, schedule: {every_s: 5, cron: '* * * * *'}}\nnodes:\n  - {id: a, call: 'm:f'}\n",
        [
            "wf.yaml:3:37: trigger.schedule: give exactly one of `every_s: SECONDS` or "
            '`cron: "MIN HOUR DAY MONTH WEEKDAY"`'
        ],
    ),
    (
        "bad cron expressions",
        HEAD + "trigger: {type: schedule, schedule: {cron: '61 * * * *'}}\nnodes:\n  - {id: a, call: 'm:f'}\n",
        [
            "wf.yaml:3:44: trigger.schedule.cron: '61 * * * *' is not a cron expression (bad minute); write five "
            "fields `MIN HOUR DAY MONTH WEEKDAY`, e.g. `*/5 * * * *` (evaluated in UTC)"
        ],
    ),
    (
        "limits must be positive numbers",
        HEAD + "limits: {deadline_s: '10', budget_usd: -1}\nnodes:\n  - {id: a, call: 'm:f'}\n",
        [
            "wf.yaml:3:22: limits.deadline_s: expected a number, found a string; write it without quotes",
            "wf.yaml:3:40: limits.budget_usd: must be at least 0, found -1",
        ],
    ),
    (
        "sample_rate is a rate from 0 to 1",
        HEAD + "sample_rate: 1.5\nnodes:\n  - {id: a, call: 'm:f'}\n",
        ["wf.yaml:3:14: sample_rate: must be a rate from 0 to 1 (the share of runs kept), found 1.5"],
    ),
    (
        "nodes must be a non-empty list",
        HEAD + "nodes: []\n",
        ["wf.yaml:3:8: nodes: expected a non-empty list of nodes, found an empty list"],
    ),
    (
        "node id rules",
        HEAD + "nodes:\n  - {id: Fetch-Data, call: 'm:f'}\n  - {id: class, call: 'm:f'}\n  - {id: def, call: 'm:f'}\n",
        [
            "wf.yaml:4:10: nodes[0].id: 'Fetch-Data' is not a node id; use lowercase letters, digits and `_`, "
            "starting with a letter (for example `fetch_data`)",
            "wf.yaml:5:10: nodes[1].id: `class` is a Python keyword; choose another node id, e.g. `class_step`",
            "wf.yaml:6:10: nodes[2].id: `def` is a Python keyword; choose another node id, e.g. `def_step`",
        ],
    ),
    (
        "duplicate node ids",
        HEAD + "nodes:\n  - {id: a, call: 'm:f'}\n  - {id: a, call: 'm:g'}\n",
        ["wf.yaml:5:10: nodes[1].id: duplicate node id `a` (first declared at nodes[0]); ids must be unique"],
    ),
    (
        "bad call strings",
        HEAD
        + "output: a\nnodes:\n  - {id: a, call: 'm.f'}\n"
        + "  - {id: b, call: 'import:f'}\n  - {id: c, call: 'm:f:g'}\n",
        [
            "wf.yaml:5:19: nodes[0].call: 'm.f' is not an import path; write `module.path:function` with Python "
            "identifiers on both sides of one colon",
            "wf.yaml:6:19: nodes[1].call: 'import:f' is not an import path; write `module.path:function` with "
            "Python identifiers on both sides of one colon",
            "wf.yaml:7:19: nodes[2].call: 'm:f:g' is not an import path; write `module.path:function` with "
            "Python identifiers on both sides of one colon",
        ],
    ),
    (
        "node needs call or http, not both",
        HEAD + "output: a\nnodes:\n  - {id: a}\n  - {id: b, call: 'm:f', http: {url: 'http://x.test'}}\n",
        [
            "wf.yaml:5:5: nodes[0]: a node needs `call: module:function` or `http: {url: ...}`",
            "wf.yaml:6:26: nodes[1].http: a node has either `call` or `http`, not both",
        ],
    ),
    (
        "unknown node key with suggestion",
        HEAD + "nodes:\n  - {id: a, call: 'm:f', retires: {attempts: 2}}\n",
        [
            "wf.yaml:4:26: nodes[0].retires: unknown key `retires` (did you mean `retry`?); allowed keys: `id`, "
            "`call`, `http`, `with`, `needs`, `retry`, `timeout_s`, `when`, `map`, `effect`, `on_error`, `capture`"
        ],
    ),
    (
        "unknown needs with suggestion, self need, repeated need",
        HEAD + "nodes:\n  - {id: fetch, call: 'm:f'}\n  - {id: b, call: 'm:f', needs: [fetc, b, fetch, fetch]}\n",
        [
            "wf.yaml:5:34: nodes[1].needs[0]: unknown node `fetc` (did you mean `fetch`?); needs must name nodes "
            "declared in `nodes`",
            "wf.yaml:5:40: nodes[1].needs[1]: node `b` cannot need itself",
            "wf.yaml:5:50: nodes[1].needs[3]: `fetch` is listed twice; list each need once",
        ],
    ),
    (
        "cycles print their path",
        HEAD
        + "nodes:\n  - {id: a, call: 'm:f', needs: [c]}\n  - {id: b, call: 'm:f', needs: [a]}\n"
        + "  - {id: c, call: 'm:f', needs: [b]}\n  - {id: d, call: 'm:f', needs: [c]}\n",
        ["wf.yaml:4:34: nodes[0].needs[0]: the needs form a cycle: a -> c -> b -> a; remove one of these needs"],
    ),
    (
        "several sinks need an output",
        HEAD + "nodes:\n  - {id: a, call: 'm:f'}\n  - {id: b, call: 'm:f'}\n",
        [
            "wf.yaml:4:3: nodes: 2 nodes have no dependents (`a`, `b`); add `output: NODE_ID` to say which one is "
            "the workflow's output"
        ],
    ),
    (
        "needs that are not a list of ids say nothing of sinks they made",
        HEAD
        + "nodes:\n  - {id: a, call: 'm:f'}\n  - {id: b, call: 'm:f', needs: a}\n"
        + "  - {id: c, call: 'm:f', needs: [b, 1]}\n",
        [
            "wf.yaml:5:33: nodes[1].needs: expected a list of node ids, found a string",
            "wf.yaml:6:37: nodes[2].needs[1]: expected a node id, found a number",
        ],
    ),
    (
        "output must name a node",
        HEAD + "output: b\nnodes:\n  - {id: a, call: 'm:f'}\n",
        ["wf.yaml:3:9: output: 'b' is not a node of this workflow; name one node id"],
    ),
    (
        "retry, timeout, map, effect, on_error values",
        HEAD
        + "nodes:\n  - id: a\n    call: 'm:f'\n    retry: {attempts: 0, factor: 0.5}\n    timeout_s: 0\n"
        + "    map: {max_concurrency: 0}\n    effect: yes\n    on_error: ignore\n",
        [
            "wf.yaml:6:23: nodes[0].retry.attempts: must be at least 1, found 0",
            "wf.yaml:6:34: nodes[0].retry.factor: must be at least 1, found 0.5",
            "wf.yaml:7:16: nodes[0].timeout_s: must be greater than 0, found 0",
            "wf.yaml:8:28: nodes[0].map.max_concurrency: must be at least 1, found 0",
            "wf.yaml:9:13: nodes[0].effect: expected true or false, found a string ('yes' is a string in YAML 1.2; "
            "write true or false)",
            "wf.yaml:10:15: nodes[0].on_error: 'ignore' is not allowed; use one of `fail`, `continue`",
        ],
    ),
    (
        "with names and env references",
        HEAD + "nodes:\n  - {id: a, call: 'm:f', with: {class: 1, 2x: 2, key: {env: 9LIVES}}}\n",
        [
            "wf.yaml:4:33: nodes[0].with.class: 'class' is not a keyword argument name; use a Python identifier "
            "that is not a keyword",
            "wf.yaml:4:43: nodes[0].with.2x: '2x' is not a keyword argument name; use a Python identifier that is "
            "not a keyword",
            "wf.yaml:4:61: nodes[0].with.key.env: '9LIVES' is not an environment variable name; use letters, "
            "digits and `_`, not starting with a digit",
        ],
    ),
    (
        "http node settings",
        HEAD
        + "nodes:\n  - id: a\n"
        + "    http: {method: FETCH, url: 'ftp://x.test', headers: {'Bad Header': x, Ok: \"a\\nb\"}}\n"
        + "    with: {x: 1}\n",
        [
            "wf.yaml:5:20: nodes[0].http.method: 'FETCH' is not allowed (did you mean `PATCH`?); use one of "
            "`GET`, `POST`, `PUT`, `PATCH`, `DELETE`",
            "wf.yaml:5:32: nodes[0].http.url: 'ftp://x.test' is not an absolute http(s) URL without spaces, "
            "e.g. `https://example.com/hook`",
            "wf.yaml:5:58: nodes[0].http.headers.Bad Header: 'Bad Header' is not an HTTP header name; use ASCII "
            "letters, digits and !#$%&'*+-.^_`|~, without spaces",
            "wf.yaml:5:79: nodes[0].http.headers.Ok: a header value cannot contain line breaks",
            "wf.yaml:6:5: nodes[0].with: `with` passes keyword arguments to a function; http nodes take none",
        ],
    ),
    (
        "http header values HTTP cannot carry",
        HEAD + "nodes:\n  - id: a\n    http: {url: 'http://x.test', headers: {A: \"\u00e9\", B: ' x', C: \"a\\tb\"}}\n",
        [
            "wf.yaml:5:47: nodes[0].http.headers.A: '\u00e9' is not a header value HTTP can carry; use visible ASCII "
            "characters, with spaces or tabs only between them",
            "wf.yaml:5:55: nodes[0].http.headers.B: ' x' is not a header value HTTP can carry; use visible ASCII "
            "characters, with spaces or tabs only between them",
        ],
    ),
    (
        "http node URL ports outside 1-65535",
        HEAD + "nodes:\n  - {id: a, http: {url: 'http://x.test:99999/h'}}\n"
        "  - {id: b, http: {url: 'http://x.test:0/h'}, needs: [a]}\n"
        "  - {id: c, http: {url: 'http://x.test:65535/h'}, needs: [b]}\n",
        [
            "wf.yaml:4:25: nodes[0].http.url: 'http://x.test:99999/h' has a bad port; write a port number "
            "from 1 to 65535",
            "wf.yaml:5:25: nodes[1].http.url: 'http://x.test:0/h' has a bad port; write a port number from 1 to 65535",
        ],
    ),
    *[
        (
            f"trigger path {route}",
            HEAD + f"trigger: {{type: http, http: {{path: '{route}'}}}}\nnodes:\n  - {{id: a, call: 'm:f'}}\n",
            [f"wf.yaml:3:36: trigger.http.path: '{route}' {why}"],
        )
        for route, why in [
            ("/a?b=1", "holds a query or fragment (`?`, `#`), so no request would ever match it; write the path alone"),
            ("/a#x", "holds a query or fragment (`?`, `#`), so no request would ever match it; write the path alone"),
            *[
                (
                    reserved,
                    "is under `/_flowledger/`, where the module's own routes (such as `/_flowledger/resume`) live; "
                    "choose another path",
                )
                for reserved in ("/_flowledger/resume", "/_flowledger/other", "/_flowledger")
            ],
        ]
    ],
    (
        "id suggestions are never keywords or too long",
        HEAD + "nodes:\n  - {id: Class, call: 'm:f'}\n  - {id: __import__, call: 'm:f'}\n"
        f"  - {{id: {LONG_LOWERING}, call: 'm:f'}}\n",
        [
            "wf.yaml:4:10: nodes[0].id: 'Class' is not a node id; use lowercase letters, digits and `_`, starting "
            "with a letter (for example `class_step`)",
            "wf.yaml:5:10: nodes[1].id: '__import__' is not a node id; use lowercase letters, digits and `_`, "
            "starting with a letter (for example `import_step`)",
            f"wf.yaml:6:10: nodes[2].id: '{LONG_LOWERING}' is not a node id; use lowercase letters, digits and "
            "`_`, starting with a letter",
        ],
    ),
    (
        "a definition that is not a mapping",
        "- just\n- a list\n",
        [
            "wf.yaml:1:1: (root): expected a mapping with keys `flowledger`, `workflow`, `trigger`, `limits`, "
            "`output`, `nodes`, `sample_rate`, `project`, `agent_id`, `intent`, found a list"
        ],
    ),
]


@pytest.mark.parametrize(("case", "text", "expected"), CORPUS, ids=[c[0] for c in CORPUS])
def test_bad_definition_reports_exactly_these_problems(case: str, text: str, expected: list[str]) -> None:
    """Each bad definition yields exactly its expected problems, with file, line, column and place."""
    assert problems(text) == expected


def test_a_json_definitions_string_is_not_blamed_on_yaml() -> None:
    """`"yes"` in a JSON file is told to be a string, without the hint about YAML 1.2 a YAML file gets."""
    text = '{"flowledger": 1, "workflow": {"id": "wf"}, "nodes": [{"id": "a", "call": "m:f", "effect": "yes"}]}'
    assert problems(text, "wf.json") == ["wf.json:1:92: nodes[0].effect: expected true or false, found a string"]


def test_all_problems_are_reported_at_once() -> None:
    """Problems in different sections all appear in one error, in file order."""
    found = problems(
        "flowledger: 1\nworkflow: {id: BAD}\ntrigger: {type: nope}\nnodes:\n  - {id: a, call: 'x'}\n"
        "  - {id: b, call: 'm:f', needs: [zz]}\n"
    )
    assert [p.split(": ")[1] for p in found] == ["workflow.id", "trigger.type", "nodes[0].call", "nodes[1].needs[0]"]


def test_needs_of_a_node_with_a_bad_or_duplicate_id_are_checked_too() -> None:
    """A node left out for its id still has its needs checked: fixing the id does not reveal new problems."""
    found = problems(
        HEAD + "nodes:\n  - {id: a, call: 'm:f'}\n  - {id: Bad, call: 'm:f', needs: [zzz]}\n"
        "  - {id: a, call: 'm:g', needs: [yyy, a]}\n  - {id: c, call: 'm:f', needs: [a]}\n"
    )
    assert [p.split(": ", 2)[1:] for p in found] == [
        ["nodes[1].id", "'Bad' is not a node id; use lowercase letters, digits and `_`, starting with a letter "
         "(for example `bad`)"],
        ["nodes[1].needs[0]", "unknown node `zzz`; needs must name nodes declared in `nodes`"],
        ["nodes[2].id", "duplicate node id `a` (first declared at nodes[0]); ids must be unique"],
        ["nodes[2].needs[0]", "unknown node `yyy`; needs must name nodes declared in `nodes`"],
        ["nodes[2].needs[1]", "node `a` cannot need itself"],
    ]  # fmt: skip


def test_definition_error_message_counts_the_problems() -> None:
    """The exception's message starts with how many problems there are and lists them all."""
    with pytest.raises(DefinitionError) as info:
        validate(parse_definition(b"flowledger: 1\n", "x.yaml"))
    assert str(info.value).startswith("2 problems in the definition:\n  x.yaml:1:1")


def test_contract_example_is_valid() -> None:
    """The definition shown in the public contract validates, including defaults."""
    text = """
    flowledger: 1
    workflow:
      id: order-intake
      name: Order intake
      version: "3"
    trigger:
      type: manual
    limits:
      deadline_s: 60
      budget_usd: 0.50
    output: decide
    nodes:
      - id: fetch
        call: shop.steps:fetch
        with: {region: eu, api_key: {env: SHOP_KEY}}
      - id: price
        call: shop.steps:price
        needs: [fetch]
        retry: {attempts: 3, backoff_s: 0.2, factor: 2.0, max_backoff_s: 5}
        timeout_s: 10
      - id: stock
        call: shop.steps:stock
        needs: [fetch]
        when: shop.steps:in_catalog
        map: {max_concurrency: 4}
      - id: decide
        call: shop.steps:decide
        needs: [price, stock]
        effect: true
      - id: notify
        http: {method: POST, url: "http://127.0.0.1:9000/hook", headers: {Authorization: {env: HOOK_TOKEN}}}
        needs: [decide]
        on_error: continue
    """
    definition = validate(parse_definition(textwrap.dedent(text).encode(), "contract.yaml"))
    assert [n.id for n in definition.nodes] == ["fetch", "price", "stock", "decide", "notify"]
    assert definition.output == "decide"
    assert definition.nodes[1].retry is not None
    assert definition.nodes[1].retry.attempts == 3
    assert definition.nodes[2].map is not None
    assert definition.nodes[2].map.max_concurrency == 4
    assert definition.limits.deadline_s == 60.0


def test_json_reader_problems_are_listed_with_the_validators_in_file_order() -> None:
    """JSON: a number past a float's range (the reader's problem) comes with the validator's problems around it,
    in file order; a reader problem alone still stops parse_definition, which reads only."""
    retry = '{"max_attempts": 1' + "0" * 5000 + "}"
    text = f'{{"flowledger": 1, "workflow": {{"id": "wf"}}, "nodes": [{{"id": "a", "call": "m:f", "retry": {retry}}}, '
    text += '{"id": "a", "call": "m:f"}]}'
    found = problems(text, "wf.json")
    assert [line.split(": ", 2)[1] for line in found] == [
        "nodes[0].retry",
        "nodes[0].retry.max_attempts",
        "nodes[0].retry.max_attempts",
        "nodes[1].id",
    ]
    assert "missing required key `attempts`" in found[0]
    assert "unknown key `max_attempts` (did you mean `attempts`?)" in found[1]  # its value left out, not its key
    assert "has 5001 digits, beyond the range of a 64-bit float" in found[2]
    assert "duplicate node id `a`" in found[3]
    with pytest.raises(DefinitionError) as caught:
        parse_definition(text.encode(), "wf.json")
    assert [line.split(": ", 2)[1] for line in caught.value.problems] == ["nodes[0].retry.max_attempts"]


def test_a_json_number_past_a_floats_range_is_read_around_as_in_yaml() -> None:
    """JSON's `1e999` is named with the validator's problems, not a syntax error that stops the reading."""
    text = '{"flowledger": 1, "workflow": {"id": "wf"}, "limits": {"deadline_s": 1e999}, '
    text += '"nodes": [{"id": "a", "call": "nope"}]}'
    assert problems(text, "wf.json") == [
        "wf.json:1:70: limits.deadline_s: `1e999` is not a finite number; only finite numbers are allowed",
        "wf.json:1:108: nodes[0].call: 'nope' is not an import path; write `module.path:function` with Python "
        "identifiers on both sides of one colon",
    ]


def test_a_json_duplicate_keys_value_is_not_read_into_the_problems() -> None:
    """The value of a duplicate JSON key is left out unread: its own problems (here `1e999`) are not reported,
    under a path no user wrote."""
    text = '{"flowledger": 1, "workflow": {"id": "wf"}, "nodes": [{"id": "a", "call": "m:f", "call": 1e999}]}'
    assert problems(text, "wf.json") == [
        "wf.json:1:82: nodes[0].call: duplicate key `call` (first written at line 1); keep one"
    ]


def test_single_sink_is_the_default_output() -> None:
    """Without `output`, the one node nothing depends on is the output."""
    definition = validate(
        parse_definition(
            (HEAD + "nodes:\n  - {id: a, call: 'm:f'}\n  - {id: b, call: 'm:f', needs: [a]}\n").encode(), "wf.yaml"
        )
    )
    assert definition.output == "b"
