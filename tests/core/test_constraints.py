"""Placement constraints: parsing both input forms, every operator, AND-of-OR, reasons."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from o11n.core.constraints import (
    OPERATORS,
    AgentView,
    Constraints,
    LiveTask,
    Placement,
    Rule,
    check,
    parse_constraints,
    to_json,
    why_unplaceable,
)
from o11n.errors import BadRequest

SEED_EXAMPLE = {
    "intersectionItem": [
        {
            "unionData": [
                {
                    "name": "city",
                    "operate": "LIKE",
                    "type": 3,
                    "text": {"value": "shenzhen"},
                }
            ]
        }
    ]
}


def agent(name: str, **attributes: str | float) -> AgentView:
    return AgentView(name, {"hostname": name, "ip": f"10.0.0.{len(name)}", **attributes})


W1 = agent("w1", city="shenzhen", cpus=24, rack="r1", disk="ssd")
W2 = agent("w2", city="shanghai", cpus="8", rack="r1")
W3 = agent("w3", city="chengdu", cpus=4.5, rack="r2")
BARE = AgentView("bare", {})
AGENTS = [W1, W2, W3, BARE]


def rules(*groups: list[tuple[str, str, object]]) -> Constraints:
    return parse_constraints(
        [[{"name": n, "operate": o, "value": v} for n, o, v in group] for group in groups]
    )


def one(name: str, operate: str, value: object = None) -> Constraints:
    return rules([(name, operate, value)])


def ask(
    constraints: Constraints,
    on: AgentView,
    live: Sequence[LiveTask] = (),
    service: str = "distcc",
    candidates: Sequence[AgentView] = AGENTS,
) -> str | None:
    return check(constraints, on, service, live, candidates)


def ok(constraints: Constraints, on: AgentView, live: Sequence[LiveTask] = ()) -> bool:
    return ask(constraints, on, live) is None


# --- operators that look only at the agent --------------------------------------------------


def test_like_matches_the_whole_value() -> None:
    like = one("city", "LIKE", "shenzhen|shanghai")
    assert ok(like, W1)
    assert ok(like, W2)
    assert ask(like, W3) == "city LIKE shenzhen|shanghai: agent w3 has city=chengdu"
    assert not ok(one("city", "LIKE", "shen"), W1)  # a prefix is not a full match
    assert ok(one("city", "LIKE", "shen.*"), W1)


def test_unlike_is_the_opposite_of_like() -> None:
    unlike = one("city", "UNLIKE", "shenzhen|shanghai")
    assert not ok(unlike, W1)
    assert not ok(unlike, W2)
    assert ok(unlike, W3)
    assert ok(one("city", "UNLIKE", "shen"), W1)


def test_like_on_a_number_matches_its_text() -> None:
    assert ok(one("cpus", "LIKE", "24"), W1)
    assert ok(one("cpus", "LIKE", r"4\.5"), W3)


def test_cluster_is_equality_with_one_value_or_membership_in_a_list() -> None:
    assert ok(one("city", "CLUSTER", "shenzhen"), W1)
    assert not ok(one("city", "CLUSTER", "shenzhen"), W2)
    assert not ok(one("city", "CLUSTER", "shen.*"), W1)  # not a regular expression
    both = one("city", "CLUSTER", ["shenzhen", "shanghai"])
    assert ok(both, W1)
    assert ok(both, W2)
    assert ask(both, W3) == "city CLUSTER shenzhen,shanghai: agent w3 has city=chengdu"


def test_greater_and_less_compare_numbers_and_numeric_strings() -> None:
    assert ok(one("cpus", "GREATER", 8), W1)
    assert not ok(one("cpus", "GREATER", 8), W2)  # "8" is not > 8
    assert ok(one("cpus", "GREATER", 7.5), W2)
    assert ok(one("cpus", "LESS", 5), W3)
    assert not ok(one("cpus", "LESS", 4.5), W3)
    assert ask(one("cpus", "LESS", 8), W1) == "cpus LESS 8: agent w1 has cpus=24"


def test_greater_on_a_non_numeric_attribute_fails() -> None:
    reason = ask(one("city", "GREATER", 1), W1)
    assert reason is not None
    assert "not a number" in reason


@pytest.mark.parametrize(
    ("operate", "value"),
    [
        ("LIKE", ".*"),
        ("UNLIKE", "nothing"),
        ("CLUSTER", "x"),
        ("GREATER", 0),
        ("LESS", 100),
        ("UNIQUE", None),
        ("MAXPER", 5),
        ("GROUPBY", None),
        ("GROUPBY", ["a", "b"]),
    ],
)
def test_a_missing_attribute_fails_every_rule_but_exclude(operate: str, value: object) -> None:
    constraints = one("zone", operate, value)
    assert ask(constraints, W1) == "zone: agent w1 has no such attribute"
    assert ask(constraints, BARE) == "zone: agent bare has no such attribute"


def test_exclude_holds_on_a_missing_attribute() -> None:
    assert ok(one("zone", "EXCLUDE", ["app=db"]), BARE)
    assert ok(one("zone", "EXCLUDE", "app=db"), W1)


# --- operators that count live tasks ---------------------------------------------------------


def task(on: AgentView, service: str = "distcc", **labels: str) -> LiveTask:
    return LiveTask(service, on.name, labels)


def test_unique_counts_only_the_same_service() -> None:
    unique = one("hostname", "UNIQUE")
    assert ok(unique, W1)
    assert ok(unique, W1, [task(W1, "other"), task(W2)])
    assert ask(unique, W1, [task(W1)]) == (
        "hostname UNIQUE: 1 task of distcc on hostname=w1 already"
    )


def test_unique_on_a_shared_attribute_blocks_agents_with_the_same_value() -> None:
    unique = one("rack", "UNIQUE")
    live = [task(W1)]
    assert not ok(unique, W2, live)  # w2 is on rack r1 too
    assert ok(unique, W3, live)


def test_maxper_allows_up_to_the_limit_per_value() -> None:
    maxper = one("rack", "MAXPER", 2)
    assert ok(maxper, W1, [task(W2)])
    live = [task(W1), task(W2), task(W3, "other"), task(W3, "other")]
    assert ask(maxper, W1, live) == "rack MAXPER 2: 2 tasks of distcc on rack=r1 already"
    assert ok(maxper, W3, live)  # the other service's tasks on r2 do not count


def test_maxper_one_names_the_host() -> None:
    maxper = one("hostname", "MAXPER", 1)
    assert (
        ask(maxper, W1, [task(W1)]) == "hostname MAXPER 1: 1 task of distcc on hostname=w1 already"
    )
    assert ok(maxper, W2, [task(W1)])


def test_groupby_spreads_tasks_evenly_over_listed_values() -> None:
    agents = [agent(f"{zone}{i}", zone=zone) for zone in ("a", "b", "c") for i in range(2)]
    agents.append(agent("d0", zone="d"))
    spread = one("zone", "GROUPBY", ["a", "b", "c"])
    live: list[LiveTask] = []
    for _ in range(9):
        placement = Placement("distcc", live, agents)
        allowed = [a for a in agents if placement.check(spread, a) is None]
        assert allowed, "some agent must always be allowed"
        assert all(a.attributes["zone"] != "d" for a in allowed)
        live.append(task(allowed[0]))
        per_zone = [sum(t.agent.startswith(z) for t in live) for z in "abc"]
        assert max(per_zone) - min(per_zone) <= 1
    assert [sum(t.agent.startswith(z) for t in live) for z in "abc"] == [3, 3, 3]


def test_groupby_refuses_the_fuller_value_with_a_reason() -> None:
    agents = [agent("a0", zone="a"), agent("b0", zone="b")]
    spread = one("zone", "GROUPBY", ["a", "b"])
    live = [task(agents[0])]
    assert ask(spread, agents[1], live, candidates=agents) is None
    assert ask(spread, agents[0], live, candidates=agents) == (
        "zone GROUPBY a,b: 1 task of distcc on zone=a, 0 on zone=b"
    )
    other = [task(agents[0], "other"), task(agents[0], "other")]
    assert ask(spread, agents[0], other, candidates=agents) is None


def test_groupby_without_values_spreads_over_every_value_of_the_candidates() -> None:
    agents = [agent("a0", zone="a"), agent("b0", zone="b"), agent("c0", zone="c")]
    for value in (None, 3, "3"):
        spread = one("zone", "GROUPBY", value)
        live = [task(agents[0]), task(agents[1])]
        assert ask(spread, agents[0], live, candidates=agents) is not None
        assert ask(spread, agents[1], live, candidates=agents) is not None
        assert ask(spread, agents[2], live, candidates=agents) is None


def test_groupby_refuses_an_agent_whose_value_is_not_listed() -> None:
    reason = ask(one("city", "GROUPBY", ["shenzhen", "shanghai"]), W3)
    assert reason is not None
    assert "city=chengdu" in reason


def test_exclude_looks_only_at_other_services_labels() -> None:
    exclude = one("hostname", "EXCLUDE", ["app=db", "tier=hot"])
    assert ok(exclude, W1, [task(W1, "distcc", app="db")])  # its own service does not count
    assert ok(exclude, W1, [task(W2, "postgres", app="db")])  # another agent
    assert ok(exclude, W1, [task(W1, "postgres", app="web")])  # another label value
    assert ask(exclude, W1, [task(W1, "redis", tier="hot")]) == (
        "hostname EXCLUDE app=db,tier=hot: agent w1 runs a task of redis labelled tier=hot"
    )


def test_an_agent_that_is_not_a_candidate_is_still_counted() -> None:
    lone = agent("lone", rack="r9")
    assert not ok(one("hostname", "UNIQUE"), lone, [task(lone)])
    placement = Placement("distcc", [task(lone)], [W1])
    assert placement.check(one("rack", "MAXPER", 1), lone) is not None


# --- AND of OR --------------------------------------------------------------------------------


def test_a_group_holds_when_any_rule_holds() -> None:
    either = rules([("city", "LIKE", "beijing"), ("rack", "CLUSTER", "r1")])
    assert ok(either, W1)
    assert ok(either, W2)
    reason = ask(either, W3)
    assert reason == (
        "city LIKE beijing: agent w3 has city=chengdu OR rack CLUSTER r1: agent w3 has rack=r2"
    )


def test_every_group_must_hold() -> None:
    both = rules([("rack", "CLUSTER", "r1")], [("cpus", "GREATER", 10)])
    assert ok(both, W1)
    assert ask(both, W2) == "cpus GREATER 10: agent w2 has cpus=8"
    assert ask(both, W3) == "rack CLUSTER r1: agent w3 has rack=r2"


def test_no_constraints_allow_any_agent() -> None:
    empties: list[object] = [None, [], (), {"intersectionItem": []}]
    for empty in empties:
        constraints = parse_constraints(empty)
        assert constraints.is_empty
        assert all(ok(constraints, a) for a in AGENTS)
    assert not one("city", "LIKE", "x").is_empty


# --- parsing ------------------------------------------------------------------------------------


def test_parse_the_compact_form() -> None:
    parsed = parse_constraints(
        [
            [{"name": "city", "operate": "like", "value": "shenzhen"}],
            {"name": "hostname", "operate": "MaxPer", "value": "2"},
            [{"name": "rack", "operate": "cluster", "value": ["r1", "r2"]}],
        ]
    )
    assert parsed == Constraints(
        (
            (Rule("city", "LIKE", "shenzhen"),),
            (Rule("hostname", "MAXPER", 2),),
            (Rule("rack", "CLUSTER", ("r1", "r2")),),
        )
    )
    assert parsed.groups[1][0].value == 2


def test_parse_the_seed_json_form() -> None:
    parsed = parse_constraints(SEED_EXAMPLE)
    assert parsed == Constraints(((Rule("city", "LIKE", "shenzhen"),),))
    assert ok(parsed, W1)
    assert not ok(parsed, W2)


def test_parse_bcs_scalar_and_set_values() -> None:
    parsed = parse_constraints(
        {
            "intersectionItem": [
                {"unionData": [{"name": "cpus", "operate": "greater", "scalar": {"value": 8}}]},
                {
                    "unionData": [
                        {
                            "name": "city",
                            "operate": "CLUSTER",
                            "type": 2,
                            "set": {"item": ["shenzhen", "chengdu"]},
                        },
                        {"name": "hostname", "operate": "UNIQUE"},
                    ]
                },
            ]
        }
    )
    assert to_json(parsed) == [
        [{"name": "cpus", "operate": "GREATER", "value": 8.0}],
        [
            {"name": "city", "operate": "CLUSTER", "value": ["shenzhen", "chengdu"]},
            {"name": "hostname", "operate": "UNIQUE", "value": None},
        ],
    ]
    assert ok(parsed, W1)
    assert not ok(parsed, W2)
    assert not ok(parsed, W3)


def test_operators_are_case_insensitive() -> None:
    for operate in OPERATORS:
        numbers = {"MAXPER": 1, "GREATER": 1, "LESS": 1}
        value = numbers.get(operate, {"EXCLUDE": "a=b", "GROUPBY": ["x"]}.get(operate, "x"))
        parsed = one("city", operate.lower(), value)
        assert parsed.groups[0][0].operate == operate


def test_the_compact_form_round_trips() -> None:
    original = rules(
        [("city", "LIKE", "shen.*"), ("city", "UNLIKE", "chengdu")],
        [("cpus", "GREATER", 2), ("cpus", "LESS", 64.5)],
        [("hostname", "UNIQUE", None), ("rack", "MAXPER", 3)],
        [("zone", "GROUPBY", ["a", "b"]), ("zone", "GROUPBY", None)],
        [("hostname", "EXCLUDE", "app=db"), ("city", "CLUSTER", "shenzhen")],
    )
    assert parse_constraints(to_json(original)) == original


def test_a_parsed_rule_compiles_its_regex_once() -> None:
    rule = one("city", "LIKE", "shen.*").groups[0][0]
    assert rule.pattern is not None
    assert rule.pattern.fullmatch("shenzhen")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            [
                [{"name": "city", "operate": "LIKE", "value": "x"}],
                [{"name": "c", "operate": "LIK"}],
            ],
            "constraints[1][0].operate: unknown operator 'LIK'; one of LIKE, UNLIKE, CLUSTER",
        ),
        ([[{"operate": "LIKE", "value": "x"}]], "constraints[0][0].name: expected an attribute"),
        ([[{"name": "", "operate": "LIKE", "value": "x"}]], "constraints[0][0].name"),
        ([[{"name": "h", "operate": "MAXPER", "value": "abc"}]], "constraints[0][0].value: "),
        ([[{"name": "h", "operate": "MAXPER", "value": 0}]], "whole number >= 1"),
        ([[{"name": "h", "operate": "MAXPER", "value": 1.5}]], "whole number >= 1"),
        ([[{"name": "h", "operate": "MAXPER", "value": True}]], "whole number >= 1"),
        ([[{"name": "c", "operate": "GREATER", "value": "x"}]], "expected a number, not 'x'"),
        ([[{"name": "c", "operate": "LESS", "value": None}]], "expected a number"),
        ([[{"name": "c", "operate": "LESS", "value": "nan"}]], "expected a number"),
        ([[{"name": "c", "operate": "LIKE", "value": "("}]], "bad regular expression '('"),
        ([[{"name": "c", "operate": "LIKE", "value": 3}]], "expected a regular expression"),
        ([[{"name": "c", "operate": "CLUSTER", "value": {"a": 1}}]], "a string or a list"),
        ([[{"name": "c", "operate": "CLUSTER", "value": []}]], "a string or a list"),
        ([[{"name": "c", "operate": "CLUSTER", "value": ["a", 1]}]], "a string or a list"),
        ([[{"name": "c", "operate": "GROUPBY", "value": "abc"}]], "a list of values or a count"),
        ([[{"name": "c", "operate": "EXCLUDE", "value": ["app"]}]], "labels written k=v"),
        ([[{"name": "c", "operate": "EXCLUDE", "value": "=db"}]], "labels written k=v"),
        ([[{"name": "c", "operate": "LIKE", "value": "x", "extra": 1}]], "unknown field extra"),
        ([[]], "constraints[0]: a group needs at least one rule"),
        ([["city"]], "constraints[0][0]: expected a rule"),
        ([5], "constraints[0]: expected a list of rules"),
        ("city LIKE x", "constraints: expected a list of groups"),
        (42, "constraints: expected a list of groups"),
        ({"name": "city", "operate": "LIKE"}, "constraints: unknown field name, operate"),
        ({"intersectionItem": {}}, "constraints.intersectionItem: expected a list"),
        ({"intersectionItem": [{"unionData": []}]}, "unionData: expected a non-empty list"),
        (
            {"intersectionItem": [{"unionData": [{"name": "c", "operate": "NOPE"}]}]},
            "constraints.intersectionItem[0].unionData[0].operate: unknown operator 'NOPE'",
        ),
        (
            {
                "intersectionItem": [
                    {"unionData": [{"name": "c", "operate": "LIKE", "text": {"value": "("}}]}
                ]
            },
            "constraints.intersectionItem[0].unionData[0].text.value: bad regular expression",
        ),
        (
            {"intersectionItem": [{"unionData": [{"name": "c", "operate": "LIKE", "type": 3}]}]},
            "type 3 needs a text field",
        ),
        (
            {
                "intersectionItem": [
                    {"unionData": [{"name": "c", "operate": "LIKE", "text": {"val": "x"}}]}
                ]
            },
            "unionData[0].text: expected {value: ...}",
        ),
        (
            {
                "intersectionItem": [
                    {"unionData": [{"name": "p", "operate": "LIKE", "type": 1, "ranges": {}}]}
                ]
            },
            "ranges are not supported",
        ),
        (
            {
                "intersectionItem": [
                    {"unionData": [{"name": "p", "operate": "LIKE", "type": 7, "text": {}}]}
                ]
            },
            "unionData[0].type: expected 0 (scalar), 2 (set) or 3 (text)",
        ),
    ],
)
def test_bad_constraints_are_bad_requests_that_say_where(raw: object, message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_constraints(raw)
    assert message in caught.value.message


def test_too_many_groups_are_refused() -> None:
    group = [{"name": "c", "operate": "LIKE", "value": "x"}]
    with pytest.raises(BadRequest, match="at most 64 groups"):
        parse_constraints([group] * 65)


def test_building_a_bad_rule_directly_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="unknown operator"):
        Rule("city", "NEAR", "x")
    with pytest.raises(BadRequest, match="city LIKE: bad regular expression"):
        Rule("city", "like", "(")


# --- why_unplaceable ------------------------------------------------------------------------------


def test_why_unplaceable_explains_an_impossible_constraint() -> None:
    reason = why_unplaceable(one("city", "LIKE", "beijing"), AGENTS, "distcc", [])
    assert reason == (
        "no agent can take a task of distcc: "
        "city LIKE beijing: agent w1 has city=shenzhen; "
        "city LIKE beijing: agent w2 has city=shanghai; "
        "city LIKE beijing: agent w3 has city=chengdu; "
        "city: agent bare has no such attribute"
    )


def test_why_unplaceable_is_none_when_some_agent_fits() -> None:
    assert why_unplaceable(one("city", "LIKE", "chengdu"), AGENTS, "distcc", []) is None
    assert why_unplaceable(parse_constraints(None), AGENTS, "distcc", []) is None


def test_why_unplaceable_counts_live_tasks() -> None:
    agents = [W1, W2]
    unique = one("hostname", "UNIQUE")
    assert why_unplaceable(unique, agents, "distcc", [task(W1)]) is None
    reason = why_unplaceable(unique, agents, "distcc", [task(W1), task(W2)])
    assert reason == (
        "no agent can take a task of distcc: "
        "hostname UNIQUE: 1 task of distcc on hostname=w1 already; "
        "hostname UNIQUE: 1 task of distcc on hostname=w2 already"
    )


def test_why_unplaceable_shortens_many_reasons_and_merges_repeats() -> None:
    agents = [agent(f"w{i}", city="x") for i in range(20)]
    reason = why_unplaceable(one("rack", "MAXPER", 1), agents, "distcc", [])
    assert reason is not None
    assert reason.count("no such attribute") == 5
    assert reason.endswith("; and 15 more")
    same = [agent(f"z{i}", zone="a") for i in range(20)]
    reason = why_unplaceable(one("zone", "MAXPER", 1), same, "distcc", [task(same[0])])
    assert reason == (
        "no agent can take a task of distcc: zone MAXPER 1: 1 task of distcc on zone=a already"
    )


def test_why_unplaceable_with_no_agents() -> None:
    assert why_unplaceable(parse_constraints(None), [], "distcc", []) == (
        "no enabled agent to place distcc on"
    )
