"""Placement constraints: an AND of OR-groups of rules on agent attributes (BCS/Marathon style).

A rule names an agent attribute, an operator and a value. A group holds when any
of its rules holds, and a constraint set holds when every group does. Some
operators look only at the agent (LIKE, UNLIKE, CLUSTER, GREATER, LESS); the
others also count the tasks that live on agents now (UNIQUE, MAXPER, GROUPBY,
EXCLUDE). Rules are validated and their regular expressions compiled once, when
parsed; `Placement` counts live tasks once per question, so checking many agents
stays cheap.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

from o11n.errors import BadRequest

OPERATORS = (
    "LIKE",
    "UNLIKE",
    "CLUSTER",
    "GREATER",
    "LESS",
    "UNIQUE",
    "MAXPER",
    "GROUPBY",
    "EXCLUDE",
)
MAX_GROUPS = 64
MAX_RULES_PER_GROUP = 64
MAX_PATTERN = 1024
MAX_REASONS = 5
SHOWN_CHARS = 60

RuleValue = str | float | int | tuple[str, ...] | None
Attribute = str | float


class _InvalidValue(BadRequest):
    """A rule value its operator cannot take; `detail` is the message without a location."""

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.detail = detail


class _Prepared(NamedTuple):
    value: RuleValue
    pattern: re.Pattern[str] | None = None
    members: frozenset[str] = frozenset()
    number: float = 0.0


@dataclass(frozen=True, slots=True)
class Rule:
    """One test of an agent attribute, e.g. `city LIKE shenzhen|shanghai`.

    The operator is upper-cased and the value normalised on construction (a list
    becomes a tuple, a count an int); a value the operator cannot take raises
    BadRequest.
    """

    name: str
    operate: str
    value: RuleValue = None
    pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    members: frozenset[str] = field(init=False, repr=False, compare=False)
    number: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        operate = self.operate.upper() if isinstance(self.operate, str) else self.operate
        if not isinstance(self.name, str) or not self.name:
            raise BadRequest(f"rule name must be a non-empty string, not {_show(self.name)}")
        if operate not in _PREPARE:
            raise BadRequest(f"{self.name}: {_unknown_operator(self.operate)}")
        try:
            prepared = _PREPARE[operate](self.value)
        except ValueError as exc:
            raise _InvalidValue(f"{self.name} {operate}: {exc}", str(exc)) from None
        object.__setattr__(self, "operate", operate)
        object.__setattr__(self, "value", prepared.value)
        object.__setattr__(self, "pattern", prepared.pattern)
        object.__setattr__(self, "members", prepared.members)
        object.__setattr__(self, "number", prepared.number)

    def describe(self) -> str:
        """The rule as people write it: `hostname MAXPER 1`, `hostname UNIQUE`."""
        value = self.value
        if value is None:
            return f"{self.name} {self.operate}"
        text = ",".join(value) if isinstance(value, tuple) else _as_text(value)
        return f"{self.name} {self.operate} {_shorten(text)}"

    def to_json(self) -> dict[str, Any]:
        """The compact form `{name, operate, value}`."""
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return {"name": self.name, "operate": self.operate, "value": value}


@dataclass(frozen=True, slots=True)
class Constraints:
    """Groups of rules: every group must hold, and a group holds when any of its rules does."""

    groups: tuple[tuple[Rule, ...], ...] = ()

    @property
    def is_empty(self) -> bool:
        """True when there is nothing to satisfy: any agent will do."""
        return not self.groups

    def to_json(self) -> list[list[dict[str, Any]]]:
        """The compact form, a list of groups of `{name, operate, value}`."""
        return [[rule.to_json() for rule in group] for group in self.groups]


NO_CONSTRAINTS = Constraints()


@dataclass(frozen=True, slots=True)
class AgentView:
    """What placement sees of an agent: its name and attributes (with `hostname` and `ip`)."""

    name: str
    attributes: Mapping[str, Attribute] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LiveTask:
    """A task placed or running now: its service, the agent it is on, and its labels."""

    service: str
    agent: str
    labels: Mapping[str, str] = field(default_factory=dict)


def to_json(constraints: Constraints) -> list[list[dict[str, Any]]]:
    """The compact form of a constraint set, for API output."""
    return constraints.to_json()


# --- parsing -------------------------------------------------------------------------------


def parse_constraints(raw: object) -> Constraints:
    """Constraints from the compact form or the BCS `intersectionItem`/`unionData` form.

    The compact form is a list of groups, each a list of `{name, operate, value}`
    (a single rule dict also counts as a group). None and [] mean no constraints.
    Errors raise BadRequest naming where in the input they are.
    """
    if raw is None:
        return NO_CONSTRAINTS
    if isinstance(raw, Constraints):
        return raw
    if isinstance(raw, Mapping):
        return _parse_bcs(raw)
    if isinstance(raw, list | tuple):
        _check_count(raw, MAX_GROUPS, "constraints", "groups")
        return Constraints(
            tuple(_parse_group(group, f"constraints[{i}]") for i, group in enumerate(raw))
        )
    raise BadRequest(
        "constraints: expected a list of groups of rules or {'intersectionItem': [...]}, "
        f"not {type(raw).__name__}"
    )


def _parse_group(raw: object, where: str) -> tuple[Rule, ...]:
    if isinstance(raw, Mapping | Rule):
        return (_parse_rule(raw, where),)
    if not isinstance(raw, list | tuple):
        raise BadRequest(f"{where}: expected a list of rules, not {type(raw).__name__}")
    if not raw:
        raise BadRequest(f"{where}: a group needs at least one rule")
    _check_count(raw, MAX_RULES_PER_GROUP, where, "rules")
    return tuple(_parse_rule(rule, f"{where}[{j}]") for j, rule in enumerate(raw))


def _parse_rule(raw: object, where: str) -> Rule:
    if isinstance(raw, Rule):
        return raw
    if not isinstance(raw, Mapping):
        raise BadRequest(f"{where}: expected a rule {{name, operate, value}}")
    _check_keys(raw, {"name", "operate", "value"}, where)
    return _make_rule(raw, raw.get("value"), where, f"{where}.value")


def _parse_bcs(raw: Mapping[Any, Any]) -> Constraints:
    _check_keys(raw, {"intersectionItem"}, "constraints")
    items = raw.get("intersectionItem")
    if not isinstance(items, list):
        raise BadRequest("constraints.intersectionItem: expected a list of {unionData: [...]}")
    _check_count(items, MAX_GROUPS, "constraints.intersectionItem", "items")
    groups = []
    for i, item in enumerate(items):
        where = f"constraints.intersectionItem[{i}]"
        if not isinstance(item, Mapping):
            raise BadRequest(f"{where}: expected {{unionData: [...]}}")
        _check_keys(item, {"unionData"}, where)
        rules = item.get("unionData")
        if not isinstance(rules, list) or not rules:
            raise BadRequest(f"{where}.unionData: expected a non-empty list of rules")
        _check_count(rules, MAX_RULES_PER_GROUP, f"{where}.unionData", "rules")
        groups.append(
            tuple(_bcs_rule(rule, f"{where}.unionData[{j}]") for j, rule in enumerate(rules))
        )
    return Constraints(tuple(groups))


_BCS_KINDS = {0: "scalar", 1: "ranges", 2: "set", 3: "text"}


def _bcs_rule(raw: object, where: str) -> Rule:
    if not isinstance(raw, Mapping):
        raise BadRequest(f"{where}: expected a rule {{name, operate, type, text|scalar|set}}")
    _check_keys(raw, {"name", "operate", "type", *_BCS_KINDS.values()}, where)
    kind = _bcs_kind(raw, where)
    if kind is None:
        return _make_rule(raw, None, where, where)
    if kind == "ranges":
        raise BadRequest(f"{where}.ranges: ranges are not supported; use scalar, set or text")
    body = raw.get(kind)
    key = "item" if kind == "set" else "value"
    if not isinstance(body, Mapping) or key not in body:
        raise BadRequest(f"{where}.{kind}: expected {{{key}: ...}}")
    return _make_rule(raw, body[key], where, f"{where}.{kind}.{key}")


def _bcs_kind(raw: Mapping[Any, Any], where: str) -> str | None:
    """Which of scalar/ranges/set/text holds the value: the one `type` names, else the only one."""
    present = [kind for kind in _BCS_KINDS.values() if kind in raw]
    if "type" not in raw:
        if len(present) > 1:
            raise BadRequest(f"{where}: give one of {', '.join(present)}, or a type")
        return present[0] if present else None
    kind = _BCS_KINDS.get(raw["type"]) if type(raw["type"]) is int else None
    if kind is None:
        raise BadRequest(f"{where}.type: expected 0 (scalar), 2 (set) or 3 (text)")
    if kind not in raw:
        raise BadRequest(f"{where}: type {raw['type']} needs a {kind} field")
    return kind


def _make_rule(raw: Mapping[Any, Any], value: object, where: str, value_where: str) -> Rule:
    name, operate = raw.get("name"), raw.get("operate")
    if not isinstance(name, str) or not name:
        raise BadRequest(f"{where}.name: expected an attribute name, not {_show(name)}")
    if not isinstance(operate, str) or operate.upper() not in _PREPARE:
        raise BadRequest(f"{where}.operate: {_unknown_operator(operate)}")
    try:
        return Rule(name, operate, cast(RuleValue, value))  # Rule checks the value
    except _InvalidValue as exc:
        raise BadRequest(f"{value_where}: {exc.detail}") from None


def _check_keys(raw: Mapping[Any, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(str(key) for key in raw if key not in allowed)
    if unknown:
        raise BadRequest(
            f"{where}: unknown field {', '.join(unknown)}; expected {', '.join(sorted(allowed))}"
        )


def _check_count(items: Sequence[object], limit: int, where: str, what: str) -> None:
    if len(items) > limit:
        raise BadRequest(f"{where}: at most {limit} {what}, not {len(items)}")


def _unknown_operator(operate: object) -> str:
    return f"unknown operator {_show(operate)}; one of {', '.join(OPERATORS)}"


# --- rule values, one preparer per operator --------------------------------------------------


def _regex(value: object) -> _Prepared:
    if not isinstance(value, str):
        raise ValueError(f"expected a regular expression (a string), not {_show(value)}")
    if len(value) > MAX_PATTERN:
        raise ValueError(f"the regular expression is longer than {MAX_PATTERN} characters")
    try:
        pattern = re.compile(value)
    except re.error as exc:
        raise ValueError(f"bad regular expression {_show(value)}: {exc}") from None
    return _Prepared(value, pattern=pattern)


def _cluster(value: object) -> _Prepared:
    if isinstance(value, str):
        return _Prepared(value, members=frozenset([value]))
    items = _strings(value, "a string or a list of strings")
    return _Prepared(items, members=frozenset(items))


def _bound(value: object) -> _Prepared:
    number = _number(value, "a number")
    return _Prepared(number, number=number)


def _unique(value: object) -> _Prepared:
    return _Prepared(None)  # UNIQUE takes no value; BCS sends one anyway, so it is ignored


def _max_per(value: object) -> _Prepared:
    number = _number(value, "a whole number >= 1")
    if not number.is_integer() or number < 1:
        raise ValueError(f"expected a whole number >= 1, not {_show(value)}")
    return _Prepared(int(number), number=number)


def _group_by(value: object) -> _Prepared:
    """A list of values to spread over, or a count (or nothing): every value agents have."""
    if value is None or _is_count(value):
        return _Prepared(None)
    items = _strings(value, "a list of values or a count")
    return _Prepared(items, members=frozenset(items))


def _exclude(value: object) -> _Prepared:
    items = (value,) if isinstance(value, str) else _strings(value, "a list of k=v labels")
    for item in items:
        key, equals, _ = item.partition("=")
        if not key or not equals:
            raise ValueError(f"expected labels written k=v, not {_show(item)}")
    return _Prepared(items, members=frozenset(items))


_PREPARE: dict[str, Callable[[object], _Prepared]] = {
    "LIKE": _regex,
    "UNLIKE": _regex,
    "CLUSTER": _cluster,
    "GREATER": _bound,
    "LESS": _bound,
    "UNIQUE": _unique,
    "MAXPER": _max_per,
    "GROUPBY": _group_by,
    "EXCLUDE": _exclude,
}


def _strings(value: object, expected: str) -> tuple[str, ...]:
    if (
        not isinstance(value, list | tuple)
        or not value
        or not all(isinstance(item, str) for item in value)
    ):
        raise ValueError(f"expected {expected}, not {_show(value)}")
    return tuple(value)


def _number(value: object, expected: str) -> float:
    number = _scalar(value) if isinstance(value, str | int | float) else None
    if number is None:
        raise ValueError(f"expected {expected}, not {_show(value)}")
    return number


def _scalar(value: Attribute) -> float | None:
    """A finite number from a number or a string that reads as one; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    number = float(value)
    return number if math.isfinite(number) else None


def _is_count(value: object) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool) and value >= 0) or (
        isinstance(value, str) and value.isdigit()
    )


def _as_text(value: Attribute) -> str:
    """An attribute as text: numbers without a trailing `.0`, so 3.0 and "3" are one value."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _shorten(text: str) -> str:
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def _show(value: object) -> str:
    return _shorten(repr(value))


# --- evaluation ----------------------------------------------------------------------------


class Placement:
    """One question, "may this agent take one more task of `service`?", over a snapshot.

    `live` are the tasks placed or running now (not the one being placed);
    `candidates` are the enabled agents. Live tasks are counted at most once per
    attribute, so asking about many agents costs little more than asking about one.
    Tasks on agents that are not among the candidates are not counted: their
    attributes are unknown.
    """

    def __init__(
        self, service: str, live: Sequence[LiveTask], candidates: Sequence[AgentView]
    ) -> None:
        self.service = service
        self._live = live
        self._candidates = candidates
        self._agents: dict[str, AgentView] | None = None
        self._counts: dict[str, dict[str, int]] = {}
        self._values: dict[str, frozenset[str]] = {}
        self._blocked: dict[frozenset[str], dict[str, str]] = {}

    def check(self, constraints: Constraints, agent: AgentView) -> str | None:
        """None when the agent may take the task, else why not, naming the failing group."""
        for group in constraints.groups:
            reasons = []
            for rule in group:
                reason = self._rule(rule, agent)
                if reason is None:
                    break
                reasons.append(reason)
            else:
                return " OR ".join(reasons)
        return None

    def _rule(self, rule: Rule, agent: AgentView) -> str | None:
        if rule.operate == "EXCLUDE":
            return self._exclude(rule, agent)
        raw = agent.attributes.get(rule.name)
        if raw is None:
            return f"{rule.name}: agent {agent.name} has no such attribute"
        return _CHECKS[rule.operate](self, rule, agent, raw)

    def _like(self, rule: Rule, agent: AgentView, raw: Attribute) -> str | None:
        matched = rule.pattern is not None and rule.pattern.fullmatch(_as_text(raw)) is not None
        return None if matched == (rule.operate == "LIKE") else _has(rule, agent, raw)

    def _cluster(self, rule: Rule, agent: AgentView, raw: Attribute) -> str | None:
        return None if _as_text(raw) in rule.members else _has(rule, agent, raw)

    def _compare(self, rule: Rule, agent: AgentView, raw: Attribute) -> str | None:
        number = _scalar(raw)
        if number is None:
            return _has(rule, agent, raw) + ", not a number"
        holds = number > rule.number if rule.operate == "GREATER" else number < rule.number
        return None if holds else _has(rule, agent, raw)

    def _max_per(self, rule: Rule, agent: AgentView, raw: Attribute) -> str | None:
        value = _as_text(raw)
        here = self._count(rule.name, agent).get(value, 0)
        limit = 1 if rule.operate == "UNIQUE" else int(rule.number)
        if here < limit:
            return None
        return f"{rule.describe()}: {_tasks(here, self.service)} on {rule.name}={value} already"

    def _group_by(self, rule: Rule, agent: AgentView, raw: Attribute) -> str | None:
        value = _as_text(raw)
        counts = self._count(rule.name, agent)
        spread = rule.members or self._values[rule.name]
        if value not in spread:
            return _has(rule, agent, raw) + ", not one of the values to spread over"
        fewest = min(spread, key=lambda v: (counts.get(v, 0), v))
        here, least = counts.get(value, 0), counts.get(fewest, 0)
        if here <= least:
            return None
        return (
            f"{rule.describe()}: {_tasks(here, self.service)} on {rule.name}={value}, "
            f"{least} on {rule.name}={fewest}"
        )

    def _exclude(self, rule: Rule, agent: AgentView) -> str | None:
        blocked = self._blocked.get(rule.members)
        if blocked is None:
            blocked = self._blocked[rule.members] = self._labelled(rule.members)
        found = blocked.get(agent.name)
        if found is None:
            return None
        return f"{rule.describe()}: agent {agent.name} runs a task of {found}"

    def _labelled(self, labels: frozenset[str]) -> dict[str, str]:
        """Agents running a task of another service with one of these labels, and which."""
        blocked: dict[str, str] = {}
        for task in self._live:
            if task.service == self.service or task.agent in blocked:
                continue
            for key, value in task.labels.items():
                label = f"{key}={value}"
                if label in labels:
                    blocked[task.agent] = f"{task.service} labelled {label}"
                    break
        return blocked

    def _count(self, name: str, agent: AgentView) -> dict[str, int]:
        """This service's live tasks per value of attribute `name` (computed once per name)."""
        self._index(agent)
        counts = self._counts.get(name)
        if counts is None:
            counts = self._counts[name] = self._tally(name)
        return counts

    def _tally(self, name: str) -> dict[str, int]:
        assert self._agents is not None
        counts: dict[str, int] = {}
        for task in self._live:
            where = self._agents.get(task.agent) if task.service == self.service else None
            raw = where.attributes.get(name) if where is not None else None
            if raw is not None:
                value = _as_text(raw)
                counts[value] = counts.get(value, 0) + 1
        self._values[name] = frozenset(
            _as_text(a.attributes[name]) for a in self._agents.values() if name in a.attributes
        )
        return counts

    def _index(self, agent: AgentView) -> None:
        """Agents by name; an agent asked about that is not a candidate joins them."""
        if self._agents is None:
            self._agents = {a.name: a for a in self._candidates}
        if agent.name not in self._agents:
            self._agents[agent.name] = agent
            self._counts.clear()
            self._values.clear()


_CHECKS: dict[str, Callable[[Placement, Rule, AgentView, Attribute], str | None]] = {
    "LIKE": Placement._like,
    "UNLIKE": Placement._like,
    "CLUSTER": Placement._cluster,
    "GREATER": Placement._compare,
    "LESS": Placement._compare,
    "UNIQUE": Placement._max_per,
    "MAXPER": Placement._max_per,
    "GROUPBY": Placement._group_by,
}


def _has(rule: Rule, agent: AgentView, raw: Attribute) -> str:
    return f"{rule.describe()}: agent {agent.name} has {rule.name}={_shorten(_as_text(raw))}"


def _tasks(count: int, service: str) -> str:
    return f"{count} task{'' if count == 1 else 's'} of {service}"


def check(
    constraints: Constraints,
    agent: AgentView,
    service: str,
    live: Sequence[LiveTask],
    candidates: Sequence[AgentView],
) -> str | None:
    """None when `agent` may take one more task of `service`, else a short reason why not.

    To ask about many agents at once, use `Placement` (or `why_unplaceable`):
    it counts the live tasks once.
    """
    if constraints.is_empty:
        return None
    return Placement(service, live, candidates).check(constraints, agent)


def why_unplaceable(
    constraints: Constraints,
    agents: Sequence[AgentView],
    service: str,
    live: Sequence[LiveTask],
) -> str | None:
    """None when some agent may take a task of `service`; else one line saying why none can."""
    if not agents:
        return f"no enabled agent to place {service} on"
    if constraints.is_empty:
        return None
    placement = Placement(service, live, agents)
    reasons: dict[str, None] = {}  # distinct reasons, in agent order
    for agent in agents:
        reason = placement.check(constraints, agent)
        if reason is None:
            return None
        reasons[reason] = None
    shown = list(reasons)[:MAX_REASONS]
    more = len(reasons) - len(shown)
    tail = f"; and {more} more" if more else ""
    return f"no agent can take a task of {service}: " + "; ".join(shown) + tail
